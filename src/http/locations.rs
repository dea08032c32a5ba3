//! `/api/locations`: the gazetteer search (public).

use actix_web::web;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::gazetteer::LocationView;
use crate::services::locations;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LocationQuery {
    /// A code (`LHR`), or the start of a city or place name (`lon`).
    pub q: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LocationList {
    /// At most 20: exact code first, then city and name prefix matches.
    pub items: Vec<LocationView>,
}

/// Airports and major cities matching `q`.
#[utoipa::path(get, path = "/api/locations", tag = "locations", params(LocationQuery),
    responses((status = 200, description = "Matches, best first", body = LocationList)))]
pub async fn search_locations(
    state: web::Data<AppState>,
    query: web::Query<LocationQuery>,
) -> web::Json<LocationList> {
    let q = query.q.as_deref().unwrap_or("");
    web::Json(LocationList {
        items: locations::search(&state.gazetteer, q),
    })
}
