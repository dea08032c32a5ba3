//! The route table: the one list of every `(method, path)` the router serves. The same list
//! registers the handlers and is exported as `ROUTES`, so tests can compare the router with the
//! OpenAPI document. Paths use `{param}` syntax, identical in actix-web and OpenAPI.

use actix_web::http::Method;
use actix_web::web;

use super::{
    auth, chat, dashboard, docs, health, locations, matches, notifications, parcels, payments,
    tracking, trips, users, wallet, ws,
};

macro_rules! route_table {
    ($($path:literal => { $($method:ident $handler:path),+ $(,)? }),* $(,)?) => {
        /// Every `(method, path)` served, in registration order.
        pub const ROUTES: &[(&str, &str)] = &[$($((stringify!($method), $path)),+),*];

        /// Registers every route; one resource per path so an unsupported method is a 405.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $(cfg.service(web::resource($path)$(.route(web::method(Method::$method).to($handler)))+);)*
        }
    };
}

route_table! {
    "/api/live" => { GET health::live },
    "/api/ready" => { GET health::ready },
    "/api/health" => { GET health::health },
    "/api/metrics" => { GET health::metrics },
    "/api/docs" => { GET docs::docs_redirect },
    "/api/auth/register" => { POST auth::register },
    "/api/auth/login" => { POST auth::login },
    "/api/auth/refresh" => { POST auth::refresh },
    "/api/auth/logout" => { POST auth::logout },
    "/api/auth/sessions" => { GET auth::list_sessions },
    "/api/auth/sessions/{id}" => { DELETE auth::revoke_session },
    "/api/users/me" => { GET users::get_me, PATCH users::update_me },
    "/api/users/{id}" => { GET users::get_user },
    "/api/locations" => { GET locations::search_locations },
    "/api/trips" => { GET trips::search_trips, POST trips::create_trip },
    "/api/trips/{id}" => { GET trips::get_trip, PATCH trips::update_trip, DELETE trips::cancel_trip },
    "/api/parcels" => { GET parcels::search_parcels, POST parcels::create_parcel },
    "/api/parcels/{id}" => { GET parcels::get_parcel, PATCH parcels::update_parcel, DELETE parcels::cancel_parcel },
    "/api/matches/suggestions" => { GET matches::get_suggestions },
    "/api/matches/explain" => { GET matches::explain_match },
    "/api/matches" => { GET matches::list_matches, POST matches::create_match },
    "/api/matches/{id}" => { GET matches::get_match },
    "/api/matches/{id}/accept" => { POST matches::accept_match },
    "/api/matches/{id}/decline" => { POST matches::decline_match },
    "/api/matches/{id}/cancel" => { POST matches::cancel_match },
    "/api/matches/{id}/pay" => { POST matches::pay_match },
    "/api/matches/{id}/pickup" => { POST matches::pickup_match },
    "/api/matches/{id}/deliver" => { POST matches::deliver_match },
    "/api/matches/{id}/codes/pickup" => { POST matches::reissue_pickup_code },
    "/api/matches/{id}/codes/delivery" => { POST matches::reissue_delivery_code },
    "/api/matches/{id}/positions" => { POST tracking::report_position },
    "/api/matches/{id}/tracking" => { GET tracking::get_tracking },
    "/api/matches/{id}/custody" => { GET tracking::get_custody },
    "/api/wallet" => { GET wallet::get_wallet },
    "/api/wallet/transactions" => { GET wallet::list_transactions },
    "/api/wallet/payout-account" => { PUT wallet::put_payout_account },
    "/api/wallet/withdrawals" => { POST wallet::create_withdrawal },
    "/api/payments/stripe/webhook" => { POST payments::stripe_webhook },
    "/api/ws" => { GET ws::open_socket },
    "/api/notifications/stream" => { GET notifications::stream_events },
    "/api/notifications" => { GET notifications::list_notifications },
    "/api/notifications/read-all" => { POST notifications::read_all_notifications },
    "/api/notifications/preferences" => { GET notifications::get_preferences, PUT notifications::put_preferences },
    "/api/notifications/{id}/read" => { POST notifications::read_notification },
    "/api/chat/rooms" => { GET chat::list_rooms },
    "/api/chat/rooms/{id}/messages" => { GET chat::list_messages, POST chat::post_message },
    "/api/chat/rooms/{id}/read" => { POST chat::mark_read },
    "/api/dashboard/stats" => { GET dashboard::get_stats },
    "/api/dashboard/activities" => { GET dashboard::list_activities },
    "/api/track/{token}" => { GET tracking::track },
    "/api/track/{token}/stream" => { GET tracking::track_stream },
}
