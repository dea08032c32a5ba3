//! `POST /api/payments/stripe/webhook`: Stripe's events, verified by signature (no bearer).

use actix_web::{web, HttpRequest};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, Problem};
use crate::services::payments::webhook;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    pub received: bool,
    /// `applied`, `duplicate` (seen before) or `ignored` (nothing of ours).
    pub outcome: &'static str,
}

/// Receives a Stripe event. The signature is checked over the raw body (300 s tolerance); a
/// duplicate event id is acknowledged and ignored.
#[utoipa::path(post, path = "/api/payments/stripe/webhook", tag = "payments",
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256 of \"t.body\">")),
    request_body(content = String, content_type = "application/json", description = "The event, as Stripe sent it"),
    responses(
        (status = 200, description = "Received", body = WebhookReceipt),
        (status = 400, description = "`invalid_signature` (nothing changes) or `unparseable_event`", body = Problem),
    ))]
pub async fn stripe_webhook(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<web::Json<WebhookReceipt>, AppError> {
    let signature = req
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    let outcome = webhook::receive(&state, &body, signature).await?;
    Ok(web::Json(WebhookReceipt {
        received: true,
        outcome: outcome.as_str(),
    }))
}
