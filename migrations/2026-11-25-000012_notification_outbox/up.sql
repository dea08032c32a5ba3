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

-- Notifications of one event with their deliveries, in one statement: the in-app rows, and
-- for each a delivery on every channel in p_channels that the user wants (their preference,
-- else the kind's default; p_mandatory pairs always) and has an address for. Pairs are
-- `kind:channel`. plpgsql, so the statement's plan is kept per connection instead of being
-- planned on every event.
CREATE FUNCTION airbar_write_notifications(
    p_ids uuid[], p_users uuid[], p_kinds text[], p_titles text[], p_bodies text[],
    p_data jsonb[], p_channels text[], p_mandatory text[], p_defaults text[], p_locale text)
RETURNS TABLE (id uuid, user_id uuid, kind text, title text, body text, data jsonb,
               read_at timestamptz, created_at timestamptz, channels text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH n AS (
        INSERT INTO notifications (id, user_id, kind, title, body, data)
        SELECT * FROM unnest(p_ids, p_users, p_kinds, p_titles, p_bodies, p_data)
        RETURNING *
    ), wanted AS (
        SELECT n.id, n.user_id, n.kind, c.channel, n.data,
               CASE c.channel WHEN 'email' THEN u.email WHEN 'sms' THEN u.phone
                              ELSE u.id::text END AS address
          FROM n
          JOIN users u ON u.id = n.user_id
         CROSS JOIN unnest(p_channels) AS c(channel)
          LEFT JOIN notification_preferences p
                 ON p.user_id = n.user_id AND p.kind = n.kind AND p.channel = c.channel
         WHERE (n.kind || ':' || c.channel) = ANY(p_mandatory)
            OR coalesce(p.enabled, (n.kind || ':' || c.channel) = ANY(p_defaults))
    ), q AS (
        INSERT INTO notification_deliveries
               (notification_id, user_id, kind, channel, address, locale, data)
        SELECT w.id, w.user_id, w.kind, w.channel, w.address, p_locale, w.data
          FROM wanted w WHERE w.address IS NOT NULL
        RETURNING notification_id, channel
    )
    SELECT n.id, n.user_id, n.kind, n.title, n.body, n.data, n.read_at, n.created_at,
           coalesce(ARRAY(SELECT q.channel FROM q WHERE q.notification_id = n.id), '{}')
      FROM n;
END
$$;
