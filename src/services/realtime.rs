//! Routing bus events to the sockets of this node: each user event goes to that user's
//! `UserHub` if they are online here (found in the registry; nothing is started for offline
//! users). Frames are serialised once per event.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use crate::actors::registry::Lookup;
use crate::actors::user_hub::{self, Deliver, RoomFrame, SessionRevoked, UserHub};
use crate::services::events::Event;
use crate::state::AppState;

/// The frames (per user) an event becomes; session revocations are handled apart.
fn frames(event: &Event) -> Vec<(Uuid, serde_json::Value)> {
    match event {
        Event::MatchUpdated {
            match_id,
            status,
            sender_id,
            traveler_id,
        } => {
            let frame = json!({"type": "match_updated", "match_id": match_id, "status": status});
            vec![(*sender_id, frame.clone()), (*traveler_id, frame)]
        }
        Event::Suggestion { user_id, items } => {
            vec![(
                *user_id,
                json!({"type": "suggestion", "reason": "posted", "items": items}),
            )]
        }
        Event::ParcelOnRoute {
            user_id,
            trip_id,
            parcel_id,
            score,
        } => vec![(
            *user_id,
            json!({"type": "suggestion", "reason": "parcel_on_route", "items": [
                {"trip_id": trip_id, "parcel_id": parcel_id, "score": score}
            ]}),
        )],
        _ => Vec::new(),
    }
}

async fn hub(state: &AppState, user: Uuid) -> Option<actix::Addr<UserHub>> {
    state
        .registry
        .send(Lookup::<UserHub>::new(user_hub::KIND, user.to_string()))
        .await
        .ok()
        .flatten()
}

pub async fn route(state: &AppState, event: Arc<Event>) {
    if let Event::SessionRevoked {
        user_id,
        session_id,
    } = event.as_ref()
    {
        if let Some(hub) = hub(state, *user_id).await {
            let _ = hub.try_send(SessionRevoked {
                session_id: *session_id,
            });
        }
        return;
    }
    if let Event::ChatMessage { members, message } = event.as_ref() {
        let room = message["room_id"]
            .as_str()
            .and_then(|r| r.parse::<Uuid>().ok());
        let seq = message["seq"].as_i64();
        let frame = room
            .zip(seq)
            .map(|(room, seq)| RoomFrame::Message { room, seq });
        let text: Arc<str> = Arc::from(message.to_string());
        for user in members {
            if let Some(hub) = hub(state, *user).await {
                let _ = hub.try_send(Deliver {
                    text: text.clone(),
                    room: frame,
                });
            }
        }
        return;
    }
    if let Event::ChatTyping {
        room_id,
        user_id,
        recipient,
    } = event.as_ref()
    {
        let frame = json!({"type": "typing", "room_id": room_id, "user_id": user_id});
        if let Some(hub) = hub(state, *recipient).await {
            let _ = hub.try_send(Deliver {
                text: Arc::from(frame.to_string()),
                room: Some(RoomFrame::Ephemeral { room: *room_id }),
            });
        }
        return;
    }
    for (user, frame) in frames(&event) {
        if let Some(hub) = hub(state, user).await {
            if hub
                .try_send(Deliver {
                    text: Arc::from(frame.to_string()),
                    room: None,
                })
                .is_err()
            {
                tracing::warn!(%user, "user hub mailbox full; event dropped for this user");
            }
        }
    }
}
