-- Payments (issue 7): what the provider was asked and answered, the provider calls still to
-- make (an outbox, so a refund or payout decided in a transaction is never lost), webhook
-- events seen, withdrawals, idempotency keys of money-moving requests, and the match's
-- custody codes and money timestamps.

ALTER TABLE users
    -- The user's connected payout account at the provider (Stripe `acct_…`).
    ADD COLUMN payout_account_id text CHECK (payout_account_id ~ '^acct_[A-Za-z0-9]{1,64}$'),
    -- Reliability strikes (a traveler cancelling a paid booking).
    ADD COLUMN strikes integer NOT NULL DEFAULT 0 CHECK (strikes >= 0);

ALTER TABLE matches
    ADD COLUMN paid_at timestamptz,
    ADD COLUMN picked_up_at timestamptz,
    ADD COLUMN delivered_at timestamptz,
    -- When the held funds go to the traveler (delivered_at + payments.release_delay_secs).
    ADD COLUMN release_at timestamptz;
-- The release sweeper's queue.
CREATE INDEX matches_release_idx ON matches (release_at) WHERE status = 'delivered';

-- One payment per match: the sender's charge at the provider.
CREATE TABLE payments (
    id          uuid PRIMARY KEY,
    match_id    uuid NOT NULL UNIQUE REFERENCES matches (id),
    provider    text NOT NULL CHECK (provider IN ('test', 'stripe')),
    -- The PaymentIntent (or the test provider's reference); NULL until the provider answered.
    intent_id   text,
    charge_id   text,
    status      text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    amount      bigint NOT NULL CHECK (amount > 0),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Refunded so far (the ledger has the same figure; reconcile compares them).
    refunded    bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    failure     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, intent_id)
);
SELECT diesel_manage_updated_at('payments');

CREATE TABLE withdrawals (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id),
    amount       bigint NOT NULL CHECK (amount > 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    destination  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    provider     text NOT NULL CHECK (provider IN ('test', 'stripe')),
    transfer_id  text,
    failure      text,
    -- A payout of one match's release (to a connected account, at release time) carries the
    -- match and the charge it is funded by (Stripe `source_transaction`); NULL for a wallet
    -- withdrawal.
    match_id     uuid REFERENCES matches (id),
    source_charge text,
    -- The Idempotency-Key of the request that made it: a retried request finds this row
    -- instead of making a second withdrawal.
    request_key  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('withdrawals');
CREATE INDEX withdrawals_user_idx ON withdrawals (user_id, id);
CREATE UNIQUE INDEX withdrawals_one_payout_per_match ON withdrawals (match_id)
    WHERE match_id IS NOT NULL;
CREATE UNIQUE INDEX withdrawals_one_per_request ON withdrawals (user_id, request_key)
    WHERE request_key IS NOT NULL;

-- Provider calls decided in a committed transaction (refunds, payouts), made by a worker with
-- the provider's idempotency key, retried with backoff up to a limit.
CREATE TABLE payment_ops (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('refund', 'transfer')),
    match_id         uuid REFERENCES matches (id),
    withdrawal_id    uuid REFERENCES withdrawals (id),
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Sent to the provider as its Idempotency-Key: a retried call never acts twice.
    idempotency_key  text NOT NULL UNIQUE,
    status           text NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    provider_ref     text,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'refund') = (match_id IS NOT NULL)),
    CHECK ((kind = 'transfer') = (withdrawal_id IS NOT NULL))
);
SELECT diesel_manage_updated_at('payment_ops');
CREATE INDEX payment_ops_due_idx ON payment_ops (next_attempt_at) WHERE status = 'pending';

-- Provider webhook events seen: the id is unique, so a duplicate is acknowledged and ignored.
CREATE TABLE webhook_events (
    id           text PRIMARY KEY,
    -- Our id for the event (ledger references are UUIDs).
    ref_id       uuid NOT NULL UNIQUE,
    provider     text NOT NULL,
    kind         text NOT NULL,
    outcome      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key of money-moving requests: the first response is stored and replayed; the
-- same key with another request is refused. `status_code` is NULL while the first one runs.
CREATE TABLE idempotency_keys (
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash  bytea NOT NULL,
    -- Who runs the request now: a retry that takes over a dead claim gets a new one, and only
    -- the current holder may store (or drop) the response.
    claim         uuid NOT NULL,
    status_code   smallint,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Custody codes: 6 digits, never stored in clear (an HMAC under the server's key), with the
-- wrong attempts counted and a validity window.
CREATE TABLE match_codes (
    match_id    uuid NOT NULL REFERENCES matches (id),
    kind        text NOT NULL CHECK (kind IN ('pickup', 'delivery')),
    -- Random per issue; the code is derived from it under the server's key, the hash stored.
    salt        bytea NOT NULL,
    code_hash   bytea NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (match_id, kind)
);
