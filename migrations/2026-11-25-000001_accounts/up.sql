-- Accounts and device sessions with rotating refresh tokens.

CREATE TABLE users (
    id                    uuid PRIMARY KEY,
    -- Normalised (trimmed, lower-case) at the boundary; unique case-insensitively.
    email                 text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    password_hash         text NOT NULL,
    display_name          text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 80),
    phone                 text,
    avatar_url            text,
    role                  text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    kyc_status            text NOT NULL DEFAULT 'none'
                          CHECK (kyc_status IN ('none', 'pending', 'verified', 'rejected')),
    email_verified        boolean NOT NULL DEFAULT false,
    rating_sum            integer NOT NULL DEFAULT 0 CHECK (rating_sum >= 0),
    rating_count          integer NOT NULL DEFAULT 0 CHECK (rating_count >= 0),
    completed_deliveries  integer NOT NULL DEFAULT 0 CHECK (completed_deliveries >= 0),
    suspended_at          timestamptz,
    failed_logins         integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until          timestamptz,
    password_changed_at   timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
SELECT diesel_manage_updated_at('users');

-- One row per device session; it is also the refresh-token family.
CREATE TABLE sessions (
    id                  uuid PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent          text NOT NULL DEFAULT '',
    ip                  text NOT NULL DEFAULT '',
    device_fingerprint  text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    -- The family's hard end (30 days after login), whatever the rotations.
    expires_at          timestamptz NOT NULL,
    revoked_at          timestamptz,
    revoked_reason      text
);
CREATE INDEX sessions_user_active_idx ON sessions (user_id, created_at) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE refresh_tokens (
    id            uuid PRIMARY KEY,
    session_id    uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- SHA-256 of the opaque token; the token itself is never stored.
    token_hash    bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    rotated_at    timestamptz,
    successor_id  uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
