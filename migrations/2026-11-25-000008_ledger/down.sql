DROP TABLE ledger_transfers;
DROP TABLE ledger_accounts;
DROP FUNCTION airbar_ledger_immutable();
DROP FUNCTION airbar_ledger_post();
