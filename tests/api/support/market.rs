//! Builders for trip and parcel requests.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use super::app::{TestApp, TestUser};

pub fn trip_body(origin: Value, destination: Value, departs_in_hours: i64) -> Value {
    let departure = Utc::now() + Duration::hours(departs_in_hours);
    json!({
        "origin": origin,
        "destination": destination,
        "departure_at": departure,
        "arrival_at": departure + Duration::hours(8),
        "capacity_grams": 5000,
        "price_per_kg": {"amount": 1500, "currency": "EUR"},
        "accepted_categories": ["documents", "clothing", "electronics"],
        "flight_number": "BA117",
        "notes": "Hand luggage only."
    })
}

pub fn lhr_jfk_trip() -> Value {
    trip_body(json!({"code": "LHR"}), json!({"code": "JFK"}), 48)
}

pub fn parcel_body() -> Value {
    let now = Utc::now();
    json!({
        "origin": {"label": "Home", "lat": 51.501234, "lng": -0.141987, "country": "GB"},
        "destination": {"code": "JFK"},
        "pickup_address": "1 Private Road, London",
        "dropoff_address": "2 Secret Street, New York",
        "ready_from": now + Duration::hours(1),
        "deliver_by": now + Duration::days(10),
        "weight_grams": 1200,
        "dimensions_cm": [30, 20, 10],
        "category": "books",
        "description": "Three hardback books for my sister.",
        "declared_value": {"amount": 6000, "currency": "EUR"},
        "max_reward": {"amount": 4000, "currency": "EUR"},
        "recipient": {"name": "Ann Recipient", "email": "ann@example.com", "phone": "+12125550123"}
    })
}

/// `body` with the value at a dotted `path` replaced.
pub fn with(mut body: Value, path: &str, value: Value) -> Value {
    let mut target = &mut body;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        target = &mut target[*p];
    }
    target[parts[parts.len() - 1]] = value;
    body
}

impl TestApp {
    /// A request as `user`, with the bypass header (so fixtures do not count against rate
    /// limits) and a JSON body when there is one.
    pub async fn request_as(
        &self,
        method: reqwest::Method,
        user: &TestUser,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let (k, v) = self.bypass();
        let mut req = self
            .client
            .request(method, self.url(path))
            .header(k, v)
            .bearer_auth(&user.access_token);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.unwrap()
    }

    pub async fn post_as(&self, user: &TestUser, path: &str, body: &Value) -> reqwest::Response {
        self.request_as(reqwest::Method::POST, user, path, Some(body))
            .await
    }

    pub async fn get_as(&self, user: &TestUser, path: &str) -> reqwest::Response {
        self.request_as(reqwest::Method::GET, user, path, None)
            .await
    }

    pub async fn patch_as(&self, user: &TestUser, path: &str, body: &Value) -> reqwest::Response {
        self.request_as(reqwest::Method::PATCH, user, path, Some(body))
            .await
    }

    pub async fn put_as(&self, user: &TestUser, path: &str, body: &Value) -> reqwest::Response {
        self.request_as(reqwest::Method::PUT, user, path, Some(body))
            .await
    }

    pub async fn delete_as(&self, user: &TestUser, path: &str) -> reqwest::Response {
        self.request_as(reqwest::Method::DELETE, user, path, None)
            .await
    }

    /// Creates a trip and returns its JSON.
    pub async fn create_trip(&self, user: &TestUser, body: &Value) -> Value {
        let res = self.post_as(user, "/api/trips", body).await;
        let status = res.status();
        let json: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{json}");
        json
    }

    pub async fn create_parcel(&self, user: &TestUser, body: &Value) -> Value {
        let res = self.post_as(user, "/api/parcels", body).await;
        let status = res.status();
        let json: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{json}");
        json
    }

    /// Every item of a listing, following cursors with `limit` per page.
    pub async fn collect_pages(&self, user: &TestUser, path: &str, limit: u32) -> Vec<Value> {
        let mut items = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit={limit}");
        for _ in 0..1000 {
            let res = self.get_as(user, &url).await;
            assert_eq!(res.status(), 200);
            let page: Value = res.json().await.unwrap();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("{path}{sep}limit={limit}&cursor={c}"),
                None => return items,
            }
        }
        panic!("more than 1000 pages");
    }
}
