//! The OpenAPI document (generated from the handlers' annotations) and its Swagger UI, whose
//! assets are vendored in the binary (nothing is downloaded at build or run time).

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::Modify;

use super::{
    auth, chat, dashboard, health, locations, matches, notifications, parcels, payments, tracking,
    trips, users, wallet, ws,
};
use crate::error::{FieldError, Problem};
use crate::services::auth::{AuthResult, SessionView};
use crate::services::health::{Check, Checks, HealthReport, Liveness, Readiness};
use crate::services::users::{PublicProfile, UserView};

pub const OPENAPI_PATH: &str = "/api/docs/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "Airbar API", description = "Peer-to-peer crowdshipping: trips, parcels, matching, held payments, chat and live tracking."),
    paths(
        health::live, health::ready, health::health, health::metrics, docs_redirect,
        auth::register, auth::login, auth::refresh, auth::logout, auth::list_sessions, auth::revoke_session,
        users::get_me, users::update_me, users::get_user,
        locations::search_locations,
        trips::create_trip, trips::search_trips, trips::get_trip, trips::update_trip, trips::cancel_trip,
        parcels::create_parcel, parcels::search_parcels, parcels::get_parcel, parcels::update_parcel, parcels::cancel_parcel,
        dashboard::get_stats, dashboard::list_activities,
        matches::get_suggestions, matches::explain_match, matches::create_match, matches::list_matches,
        matches::get_match, matches::accept_match, matches::decline_match, matches::cancel_match,
        matches::pay_match, matches::pickup_match, matches::deliver_match, matches::reissue_pickup_code, matches::reissue_delivery_code,
        wallet::get_wallet, wallet::list_transactions, wallet::put_payout_account, wallet::create_withdrawal,
        payments::stripe_webhook,
        ws::open_socket, notifications::stream_events,
        notifications::list_notifications, notifications::read_notification, notifications::read_all_notifications,
        notifications::get_preferences, notifications::put_preferences,
        chat::list_rooms, chat::list_messages, chat::post_message, chat::mark_read,
        tracking::track,
        tracking::track_stream,
        tracking::report_position,
        tracking::get_tracking,
        tracking::get_custody,
    ),
    components(schemas(
        Problem, FieldError, Liveness, Readiness, Checks, Check, HealthReport,
        AuthResult, SessionView, UserView, PublicProfile,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness, metrics and documentation"),
        (name = "auth", description = "Accounts, tokens and device sessions"),
        (name = "users", description = "Profiles"),
        (name = "locations", description = "The gazetteer of airports and cities"),
        (name = "trips", description = "Travelers' trips with spare capacity"),
        (name = "parcels", description = "Senders' parcels"),
        (name = "dashboard", description = "My figures and activity"),
        (name = "matching", description = "Suggestions, requests and bookings"),
        (name = "realtime", description = "The WebSocket"),
        (name = "chat", description = "One room per match"),
        (name = "notifications", description = "In-app notifications and delivery preferences"),
        (name = "tracking", description = "Live positions, ETA and custody log; the recipient's tracking link (no account)"),
        (name = "wallet", description = "Balances, ledger lines, payout account and withdrawals"),
        (name = "payments", description = "Payment provider webhooks"),
    ),
)]
pub struct ApiDoc;

/// The `bearer` security scheme (access-token JWTs) the secured paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The Swagger UI at `/api/docs/` and the document at `/api/docs/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/api/docs/{_:.*}").url(OPENAPI_PATH, ApiDoc::openapi())
}

/// Redirects to the Swagger UI.
#[utoipa::path(get, path = "/api/docs", tag = "operations",
    responses((status = 308, description = "Redirect to the Swagger UI at /api/docs/")))]
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/api/docs/"))
        .finish()
}
