-- The ledger: the source of truth for money. Double entry: every transfer moves an amount from
-- one account to another of the same currency, so per currency all balances sum to zero.
-- Balances are maintained by the transfer trigger in the inserting transaction and checked by
-- constraints; transfers are immutable.

CREATE TABLE ledger_accounts (
    id          uuid PRIMARY KEY,
    -- user_available / user_paid_out: per user; match_held: per match; the rest: one each.
    kind        text NOT NULL CHECK (kind IN ('user_available', 'user_paid_out', 'match_held',
                    'platform_revenue', 'provider_clearing', 'payouts_in_flight')),
    owner_id    uuid,
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance     bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('user_available', 'user_paid_out', 'match_held')) = (owner_id IS NOT NULL)),
    -- Only the provider's clearing account is a mirror of money outside (it goes negative as
    -- money comes in); every other balance is money someone holds and never negative.
    CHECK (kind = 'provider_clearing' OR balance >= 0),
    UNIQUE NULLS NOT DISTINCT (kind, owner_id, currency)
);

CREATE TABLE ledger_transfers (
    id               uuid PRIMARY KEY,
    -- The same key never posts twice.
    idempotency_key  text NOT NULL UNIQUE CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    debit_account    uuid NOT NULL REFERENCES ledger_accounts (id),
    credit_account   uuid NOT NULL REFERENCES ledger_accounts (id),
    amount           bigint NOT NULL CHECK (amount > 0),
    currency         text NOT NULL,
    -- What it is for: a match, a webhook event, a withdrawal.
    reference_kind   text NOT NULL CHECK (reference_kind IN ('match', 'webhook', 'withdrawal')),
    reference_id     uuid NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (debit_account <> credit_account)
);
CREATE INDEX ledger_transfers_debit_idx ON ledger_transfers (debit_account, created_at);
CREATE INDEX ledger_transfers_credit_idx ON ledger_transfers (credit_account, created_at);
CREATE INDEX ledger_transfers_reference_idx ON ledger_transfers (reference_kind, reference_id);

-- Posting a transfer moves the balances (in the same transaction) after checking both accounts
-- hold the transfer's currency; the balance constraints then refuse an overdraft.
CREATE FUNCTION airbar_ledger_post() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts SET balance = balance - NEW.amount
     WHERE id = NEW.debit_account AND currency = NEW.currency;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'debit account % does not hold %', NEW.debit_account, NEW.currency
            USING ERRCODE = 'data_exception';
    END IF;
    UPDATE ledger_accounts SET balance = balance + NEW.amount
     WHERE id = NEW.credit_account AND currency = NEW.currency;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'credit account % does not hold %', NEW.credit_account, NEW.currency
            USING ERRCODE = 'data_exception';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_transfers_post AFTER INSERT ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION airbar_ledger_post();

-- Transfers are history: never changed, never removed (a correction is a new transfer).
CREATE FUNCTION airbar_ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger transfers are immutable' USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER ledger_transfers_immutable BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION airbar_ledger_immutable();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION airbar_ledger_immutable();
