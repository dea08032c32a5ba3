//! The ledger tables: accounts, whose balances the transfer trigger maintains in the posting
//! transaction (and constraints keep non-negative), and immutable transfers.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{ledger_accounts, ledger_transfers};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ledger_transfers, check_for_backend(diesel::pg::Pg))]
pub struct TransferRow {
    pub id: Uuid,
    pub idempotency_key: String,
    pub debit_account: Uuid,
    pub credit_account: Uuid,
    pub amount: i64,
    pub currency: String,
    pub reference_kind: String,
    pub reference_id: Uuid,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = ledger_transfers)]
pub struct NewTransfer<'a> {
    pub id: Uuid,
    pub idempotency_key: &'a str,
    pub debit_account: Uuid,
    pub credit_account: Uuid,
    pub amount: i64,
    pub currency: &'a str,
    pub reference_kind: &'a str,
    pub reference_id: Uuid,
}

/// The account of `kind` for `owner` in `currency`, created on first use.
pub async fn account_id(
    conn: &mut AsyncPgConnection,
    kind: &str,
    owner: Option<Uuid>,
    currency: &str,
) -> QueryResult<Uuid> {
    let inserted: Option<Uuid> = diesel::insert_into(ledger_accounts::table)
        .values((
            ledger_accounts::id.eq(Uuid::now_v7()),
            ledger_accounts::kind.eq(kind),
            ledger_accounts::owner_id.eq(owner),
            ledger_accounts::currency.eq(currency),
        ))
        .on_conflict_do_nothing()
        .returning(ledger_accounts::id)
        .get_result(conn)
        .await
        .optional()?;
    if let Some(id) = inserted {
        return Ok(id);
    }
    let mut query = ledger_accounts::table
        .filter(ledger_accounts::kind.eq(kind))
        .filter(ledger_accounts::currency.eq(currency))
        .select(ledger_accounts::id)
        .into_boxed();
    query = match owner {
        Some(owner) => query.filter(ledger_accounts::owner_id.eq(owner)),
        None => query.filter(ledger_accounts::owner_id.is_null()),
    };
    query.first(conn).await
}

pub async fn find_transfer(
    conn: &mut AsyncPgConnection,
    key: &str,
) -> QueryResult<Option<TransferRow>> {
    ledger_transfers::table
        .filter(ledger_transfers::idempotency_key.eq(key))
        .select(TransferRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Inserts a transfer; the trigger moves both balances in this transaction.
pub async fn insert_transfer(
    conn: &mut AsyncPgConnection,
    transfer: &NewTransfer<'_>,
) -> QueryResult<TransferRow> {
    diesel::insert_into(ledger_transfers::table)
        .values(transfer)
        .returning(TransferRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn balance(conn: &mut AsyncPgConnection, account: Uuid) -> QueryResult<i64> {
    ledger_accounts::table
        .find(account)
        .select(ledger_accounts::balance)
        .first(conn)
        .await
}

#[derive(Debug, QueryableByName)]
pub struct InvariantRow {
    /// Currencies whose balances do not sum to zero.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub unbalanced_currencies: i64,
    /// Accounts whose balance differs from the sum of their transfers.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub drifted_accounts: i64,
    /// Transfers between accounts of another currency than their own.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub mixed_currency_transfers: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub transfers: i64,
}

/// Checks the ledger's invariants over every account and transfer.
pub async fn check_invariants(conn: &mut AsyncPgConnection) -> QueryResult<InvariantRow> {
    diesel::sql_query(
        r"
        WITH moves AS (
            SELECT debit_account AS account, -amount AS delta FROM ledger_transfers
            UNION ALL
            SELECT credit_account, amount FROM ledger_transfers
        ), sums AS (
            SELECT account, sum(delta) AS total FROM moves GROUP BY account
        )
        SELECT
            (SELECT count(*) FROM (SELECT currency FROM ledger_accounts GROUP BY currency
                                    HAVING sum(balance) <> 0) u) AS unbalanced_currencies,
            (SELECT count(*) FROM ledger_accounts a LEFT JOIN sums s ON s.account = a.id
              WHERE a.balance <> coalesce(s.total, 0)) AS drifted_accounts,
            (SELECT count(*) FROM ledger_transfers t
               JOIN ledger_accounts d ON d.id = t.debit_account
               JOIN ledger_accounts c ON c.id = t.credit_account
              WHERE d.currency <> t.currency OR c.currency <> t.currency) AS mixed_currency_transfers,
            (SELECT count(*) FROM ledger_transfers) AS transfers
        ",
    )
    .get_result(conn)
    .await
}
