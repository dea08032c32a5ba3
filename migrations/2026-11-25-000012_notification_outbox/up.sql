-- Delivery outbox of notifications (issue 8): one row per message to send by email, SMS or
-- push, written in the transaction of the event (with the in-app notification it belongs to,
-- or alone for a parcel's recipient, who has no account). Workers claim due rows with
-- FOR UPDATE SKIP LOCKED and a lease, so several nodes never send one row at once.
CREATE TABLE notification_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The in-app notification it repeats; NULL for a message to a parcel's recipient.
    notification_id  uuid REFERENCES notifications (id) ON DELETE CASCADE,
    user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
    -- The template: notification kind, or `recipient_delivery_code`.
    kind             text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 64),
    channel          text NOT NULL CHECK (channel IN ('email', 'sms', 'push')),
    -- Email address, phone number or (push) user id, as it was when queued.
    address          text NOT NULL CHECK (char_length(address) BETWEEN 1 AND 320),
    locale           text NOT NULL DEFAULT 'en' CHECK (char_length(locale) BETWEEN 2 AND 16),
    -- What the template needs (ids, amounts); never a code or a rendered body.
    data             jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed', 'suppressed', 'obsolete')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When it is due; a claim moves it a lease ahead (and sets `lease`).
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease            uuid,
    provider_id      text CHECK (char_length(provider_id) <= 200),
    last_error       text CHECK (char_length(last_error) <= 500),
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- The workers' claim: due rows of one channel.
CREATE INDEX notification_deliveries_due_idx
    ON notification_deliveries (channel, next_attempt_at) WHERE status = 'pending';
-- The per-recipient rate limit: what went to an address recently.
CREATE INDEX notification_deliveries_recent_idx
    ON notification_deliveries (channel, address, finished_at) WHERE status = 'sent';
-- Retention.
CREATE INDEX notification_deliveries_finished_idx
    ON notification_deliveries (finished_at) WHERE status <> 'pending';

-- The recipient's tracking link (/api/track/<token>): unguessable, set when the match is paid.
ALTER TABLE matches ADD COLUMN tracking_token text UNIQUE
    CHECK (char_length(tracking_token) BETWEEN 32 AND 64);
