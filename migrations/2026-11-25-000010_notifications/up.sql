-- In-app notifications (issue 8, first part): one row per recipient and business event,
-- written in the transaction of the event itself, so a committed event always has its
-- notifications and a rolled-back one never does.
CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- `match_requested`, `match_accepted`, …, `funds_released`, `refund`, `withdrawal_paid`.
    kind        text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 64),
    title       text NOT NULL CHECK (char_length(title) <= 200),
    body        text NOT NULL CHECK (char_length(body) <= 2000),
    -- Ids the client needs to open the subject (never personal data).
    data        jsonb NOT NULL DEFAULT '{}',
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id);
CREATE INDEX notifications_unread_idx ON notifications (user_id, id) WHERE read_at IS NULL;
