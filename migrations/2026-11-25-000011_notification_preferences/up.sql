-- A user's choices per notification kind and channel; absent rows mean the default
-- (services::notifications::preferences).
CREATE TABLE notification_preferences (
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 64),
    channel     text NOT NULL CHECK (channel IN ('in_app', 'email', 'sms', 'push')),
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, kind, channel)
);
