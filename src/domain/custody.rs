//! The custody log's hash chain. Each event of a match is hashed as
//! `hash = SHA-256(prev_hash || canonical event)`, the first `prev_hash` being 32 zero bytes; the
//! canonical event is the compact JSON object `{"at","data","kind","match_id","seq"}` with every
//! object's keys in byte order at every depth and `at` in RFC 3339 UTC with microseconds (what
//! PostgreSQL keeps). Editing, inserting, reordering or dropping a link changes every hash after
//! it; the match keeps the head, so dropping the tail shows too.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const GENESIS: [u8; 32] = [0; 32];

/// One link as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub seq: i32,
    pub kind: String,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// `value` with object keys sorted at every depth (whatever map order serde_json was built with).
fn sorted(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted).collect())
        }
        other => other.clone(),
    }
}

/// The bytes an event is hashed as.
pub fn canonical(
    match_id: Uuid,
    seq: i32,
    kind: &str,
    at: DateTime<Utc>,
    data: &serde_json::Value,
) -> Vec<u8> {
    let event = serde_json::json!({
        "at": at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
        "kind": kind,
        "match_id": match_id,
        "seq": seq,
    });
    serde_json::to_vec(&sorted(&event)).unwrap_or_default()
}

pub fn link_hash(prev: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// The outcome of checking a match's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Every link's hash recomputes, links follow each other, and the last is the match's head.
    pub valid: bool,
    pub length: usize,
    /// The first link that does not verify (its `seq`), if any.
    pub broken_at: Option<i32>,
    /// What is wrong there: `hash_mismatch`, `broken_link`, `sequence_gap`, `head_mismatch`.
    pub problem: Option<String>,
}

/// Checks `links` (in `seq` order) against the match's recorded head (`None`: no events yet).
pub fn verify(match_id: Uuid, links: &[Link], head: Option<(i32, &[u8])>) -> Verification {
    let broken = |seq: i32, problem: &str| Verification {
        valid: false,
        length: links.len(),
        broken_at: Some(seq),
        problem: Some(problem.to_owned()),
    };
    let mut prev: Vec<u8> = GENESIS.to_vec();
    for (i, link) in links.iter().enumerate() {
        let expected_seq = i32::try_from(i + 1).unwrap_or(i32::MAX);
        if link.seq != expected_seq {
            return broken(expected_seq, "sequence_gap");
        }
        if link.prev_hash != prev {
            return broken(link.seq, "broken_link");
        }
        let bytes = canonical(match_id, link.seq, &link.kind, link.at, &link.data);
        if link_hash(&prev, &bytes).as_slice() != link.hash.as_slice() {
            return broken(link.seq, "hash_mismatch");
        }
        prev = link.hash.clone();
    }
    let tail = links.last().map(|l| (l.seq, l.hash.as_slice()));
    if tail != head {
        let at = tail.map_or(1, |(seq, _)| seq);
        let at = head.map_or(at, |(seq, _)| seq.max(at));
        return broken(at, "head_mismatch");
    }
    Verification {
        valid: true,
        length: links.len(),
        broken_at: None,
        problem: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(match_id: Uuid, events: &[(&str, serde_json::Value)]) -> Vec<Link> {
        let at = DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut prev = GENESIS.to_vec();
        let mut out = Vec::new();
        for (i, (kind, data)) in events.iter().enumerate() {
            let seq = i as i32 + 1;
            let hash = link_hash(&prev, &canonical(match_id, seq, kind, at, data)).to_vec();
            out.push(Link {
                seq,
                kind: (*kind).to_owned(),
                data: data.clone(),
                at,
                prev_hash: prev,
                hash: hash.clone(),
            });
            prev = hash;
        }
        out
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_depth_and_fixes_the_time_format() {
        let id = Uuid::nil();
        let at = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = String::from_utf8(canonical(
            id,
            1,
            "paid",
            at,
            &json!({"z": 1, "a": {"y": 2, "b": 3}}),
        ))
        .unwrap();
        assert_eq!(
            text,
            r#"{"at":"2026-11-26T10:00:00.000000Z","data":{"a":{"b":3,"y":2},"z":1},"kind":"paid","match_id":"00000000-0000-0000-0000-000000000000","seq":1}"#
        );
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_breaks_it() {
        let id = Uuid::now_v7();
        let links = chain(
            id,
            &[
                ("paid", json!({"price": 1500, "currency": "EUR"})),
                ("code_issued", json!({"code": "pickup"})),
                ("pickup_verified", json!({})),
            ],
        );
        let head = |l: &[Link]| l.last().map(|l| (l.seq, l.hash.clone()));
        let h = head(&links).unwrap();
        assert!(verify(id, &links, Some((h.0, &h.1))).valid);
        assert!(verify(id, &[], None).valid);

        let mut edited = links.clone();
        edited[1].data = json!({"code": "delivery"});
        let v = verify(id, &edited, Some((h.0, &h.1)));
        assert_eq!(
            (v.valid, v.broken_at, v.problem.as_deref()),
            (false, Some(2), Some("hash_mismatch"))
        );

        let mut dropped = links.clone();
        dropped.remove(1);
        assert_eq!(
            verify(id, &dropped, Some((h.0, &h.1))).problem.as_deref(),
            Some("sequence_gap")
        );

        let truncated = &links[..2];
        let v = verify(id, truncated, Some((h.0, &h.1)));
        assert_eq!(
            (v.broken_at, v.problem.as_deref()),
            (Some(3), Some("head_mismatch"))
        );

        // A rehashed forgery of one link still breaks the next link.
        let mut forged = links.clone();
        forged[0].data = json!({"price": 1, "currency": "EUR"});
        forged[0].hash = link_hash(
            &GENESIS,
            &canonical(id, 1, "paid", forged[0].at, &forged[0].data),
        )
        .to_vec();
        assert_eq!(
            verify(id, &forged, Some((h.0, &h.1))).problem.as_deref(),
            Some("broken_link")
        );

        // The same events under another match do not verify.
        assert!(!verify(Uuid::now_v7(), &links, Some((h.0, &h.1))).valid);
    }
}
