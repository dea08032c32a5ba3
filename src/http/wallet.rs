//! `/api/wallet`: balances, ledger lines, the payout account and withdrawals.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::idempotent;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::money::{Money, MoneyDto};
use crate::error::{AppError, Problem};
use crate::services::auth::AuthUser;
use crate::services::payments::wallet::{self, LinePage, WalletView, WithdrawalView};
use crate::state::AppState;

/// My balances per currency.
#[utoipa::path(get, path = "/api/wallet", tag = "wallet", security(("bearer" = [])),
    responses((status = 200, description = "Balances per currency, in minor units", body = WalletView)))]
pub async fn get_wallet(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<web::Json<WalletView>, AppError> {
    Ok(web::Json(wallet::show(&state, user).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LineParams {
    pub cursor: Option<String>,
    /// Default 20, at most 100.
    pub limit: Option<i64>,
}

/// Ledger lines into and out of my accounts, newest first.
#[utoipa::path(get, path = "/api/wallet/transactions", tag = "wallet", security(("bearer" = [])), params(LineParams),
    responses((status = 200, description = "One page", body = LinePage)))]
pub async fn list_transactions(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<LineParams>,
) -> Result<web::Json<LinePage>, AppError> {
    let p = params.into_inner();
    Ok(web::Json(
        wallet::transactions(&state, user, p.cursor.as_deref(), p.limit).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutAccountRequest {
    /// The connected account at the provider (`acct_…`).
    pub account_id: String,
}

/// Connects the account withdrawals are paid to.
#[utoipa::path(put, path = "/api/wallet/payout-account", tag = "wallet", security(("bearer" = [])),
    request_body = PayoutAccountRequest,
    responses((status = 200, description = "Connected", body = WalletView),
              (status = 422, description = "Malformed or unknown account", body = Problem)))]
pub async fn put_payout_account(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<PayoutAccountRequest>,
) -> Result<web::Json<WalletView>, AppError> {
    Ok(web::Json(
        wallet::set_payout_account(&state, user, &body.account_id).await?,
    ))
}

/// Withdraws from my available balance to my payout account. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/wallet/withdrawals", tag = "wallet", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "A replay returns the first response; another body under the same key is 422")),
    request_body = MoneyDto,
    responses(
        (status = 201, description = "Created; `paid` once the transfer went through, `failed` (money back in available) if refused", body = WithdrawalView),
        (status = 409, description = "`insufficient_funds` or `payout_account_required`", body = Problem),
        (status = 422, description = "Bad amount or currency, or `idempotency_key_reused`", body = Problem),
    ))]
pub async fn create_withdrawal(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    body: web::Json<MoneyDto>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let amount = Money::parse(&body, "amount")?;
    idempotent::respond(
        &state,
        user,
        &req,
        &body,
        StatusCode::CREATED,
        async |key| wallet::withdraw(&state, user, amount, key.as_deref()).await,
    )
    .await
}
