//! The gazetteer search.

use serde_json::Value;

use crate::support::spawn_app;

#[tokio::test]
async fn an_exact_code_comes_first_and_results_are_capped_at_twenty() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/locations?q=lhr").await;
    assert_eq!(status, 200);
    let first = &body["items"][0];
    assert_eq!(first["code"], "LHR");
    assert_eq!(first["kind"], "airport");
    assert_eq!(first["city"], "London");
    assert_eq!(first["country"], "GB");
    assert_eq!(first["timezone"], "Europe/London");
    assert!(first["lat"].as_f64().unwrap() > 51.0);

    let (_, body) = app.get_json("/api/locations?q=lon").await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    let codes: Vec<&str> = items.iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"london-gb"), "{codes:?}");
    let london_rank = codes.iter().position(|c| *c == "london-gb").unwrap();
    let first_word_only = items.iter().position(|i| {
        let name = i["name"].as_str().unwrap().to_lowercase();
        let city = i["city"].as_str().unwrap_or("").to_lowercase();
        !name.starts_with("lon") && !city.starts_with("lon")
    });
    assert!(
        first_word_only.is_none_or(|w| w > london_rank),
        "prefix matches rank before word matches"
    );
}

#[tokio::test]
async fn an_empty_or_unmatched_query_returns_nothing() {
    let app = spawn_app().await;
    for q in ["", "%20", "zzzzqqq"] {
        let (status, body): (u16, Value) = app.get_json(&format!("/api/locations?q={q}")).await;
        assert_eq!(status, 200);
        assert!(body["items"].as_array().unwrap().is_empty(), "{q}");
    }
}
