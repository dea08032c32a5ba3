DROP TABLE match_codes;
DROP TABLE idempotency_keys;
DROP TABLE webhook_events;
DROP TABLE payment_ops;
DROP TABLE withdrawals;
DROP TABLE payments;
DROP INDEX matches_release_idx;
ALTER TABLE matches DROP COLUMN paid_at, DROP COLUMN picked_up_at, DROP COLUMN delivered_at,
    DROP COLUMN release_at;
ALTER TABLE users DROP COLUMN payout_account_id, DROP COLUMN strikes;
