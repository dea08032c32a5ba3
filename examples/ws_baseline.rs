//! `ws_baseline`: the "practical limit" reference for the real-time gateway measurements
//! (issue 6, "Measure"). A minimal raw tokio + tokio-tungstenite broadcast server, no auth, no
//! database, speaking the subset of the `/api/ws` protocol that `loadgen idle` and
//! `loadgen fanout --baseline` use, so both run against it unchanged:
//!
//! - `hello` on connect; `ping` → `pong`; a WebSocket ping every 20 s, closed (1008) after 60 s
//!   without any frame from the client;
//! - `subscribe {channel: "chat:<id>" | "tracking:<id>"}` → `subscribed {channel, last_seq}` (no
//!   history kept, so no replay), `unsubscribe`;
//! - `send {room_id, client_msg_id, body}` → a per-room sequence number, `ack {client_msg_id, id,
//!   seq, room_id}` to the sender and one `message {room_id, seq, id, sender_id: null, body,
//!   client_msg_id, sent_at}` to every subscribed socket (the sender's included, as the service
//!   does), serialised once;
//! - `position {match_id, lat, lng, accuracy_m, recorded_at}` → one `position {match_id, lat,
//!   lng, accuracy_m, recorded_at, eta}` to every socket subscribed to `tracking:<match_id>` (no
//!   filter, no storage, `eta` = `recorded_at`);
//! - every socket has one bounded outbox drained by its writer task; a socket whose outbox is
//!   full is a slow consumer and is closed (1008).
//!
//! Usage: `ws_baseline --port P [--host 127.0.0.1]` (any path is accepted; tokens are ignored).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const PING_EVERY: Duration = Duration::from_secs(20);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Frames queued for one socket before it counts as a slow consumer.
const OUTBOX: usize = 256;

/// One connection as the rooms see it: its outbox, and how to make it go away.
#[derive(Clone)]
struct Conn {
    outbox: mpsc::Sender<Message>,
    kill: Arc<Kill>,
}

#[derive(Default)]
struct Kill {
    notify: Notify,
    code: AtomicU16,
}

impl Conn {
    /// Queues a frame; a full outbox closes the socket (1008). `false` when it is gone.
    fn push(&self, msg: Message) -> bool {
        match self.outbox.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill.code.store(1008, Ordering::Relaxed);
                self.kill.notify.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
struct Room {
    seq: i64,
    subscribers: HashMap<u64, Conn>,
}

#[derive(Default)]
struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    next_conn: AtomicU64,
    live: AtomicU64,
    messages: AtomicU64,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    room_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_msg_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow)]
    match_id: Option<Cow<'a, str>>,
    lat: Option<f64>,
    lng: Option<f64>,
    accuracy_m: Option<f64>,
    #[serde(borrow)]
    recorded_at: Option<Cow<'a, str>>,
}

/// The channels a socket may subscribe to.
fn known_channel(channel: &str) -> bool {
    ["chat:", "tracking:"]
        .iter()
        .any(|p| channel.strip_prefix(p).is_some_and(|id| !id.is_empty()))
}

fn text(value: &serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn error(code: &str, message: &str) -> Message {
    text(&json!({"type": "error", "code": code, "message": message}))
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Handles one text frame of connection `id`; `subs` are its subscribed rooms.
    fn on_text(&self, id: u64, me: &Conn, subs: &mut Vec<String>, raw: &str) {
        let Ok(frame) = serde_json::from_str::<Incoming>(raw) else {
            me.push(error("bad_frame", "Frames are JSON objects with a `type`."));
            return;
        };
        match frame.kind.as_ref() {
            "ping" => {
                me.push(Message::Text(Utf8Bytes::from_static(r#"{"type":"pong"}"#)));
            }
            "subscribe" => {
                let channel = frame.channel.unwrap_or_default();
                if !known_channel(&channel) {
                    me.push(error("forbidden", "Unknown channel."));
                    return;
                }
                let room_id = channel.as_ref();
                let mut rooms = self.lock();
                let room = rooms.entry(room_id.to_owned()).or_default();
                room.subscribers.insert(id, me.clone());
                // Queued under the room's lock: no message of this room can overtake it.
                me.push(text(
                    &json!({"type": "subscribed", "channel": channel, "last_seq": room.seq}),
                ));
                if !subs.iter().any(|r| r == room_id) {
                    subs.push(room_id.to_owned());
                }
            }
            "unsubscribe" => {
                let channel = frame.channel.unwrap_or_default();
                if known_channel(&channel) {
                    let room_id = channel.as_ref();
                    if let Some(room) = self.lock().get_mut(room_id) {
                        room.subscribers.remove(&id);
                    }
                    subs.retain(|r| r != room_id);
                }
            }
            "send" => {
                let Some(room_id) = frame.room_id.filter(|r| !r.is_empty()) else {
                    me.push(error("bad_frame", "`send` needs a room_id."));
                    return;
                };
                let client_msg_id = frame.client_msg_id.unwrap_or_default();
                let msg_id = uuid::Uuid::new_v4();
                let sent_at =
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let mut rooms = self.lock();
                let room = rooms.entry(format!("chat:{room_id}")).or_default();
                room.seq += 1;
                let seq = room.seq;
                let message = Utf8Bytes::from(
                    json!({"type": "message", "room_id": room_id, "seq": seq, "id": msg_id,
                        "sender_id": null, "body": frame.body.unwrap_or_default(),
                        "client_msg_id": client_msg_id, "sent_at": sent_at})
                    .to_string(),
                );
                me.push(text(&json!({"type": "ack", "client_msg_id": client_msg_id,
                    "id": msg_id, "seq": seq, "room_id": room_id})));
                room.subscribers
                    .retain(|_, conn| conn.push(Message::Text(message.clone())));
                self.messages.fetch_add(1, Ordering::Relaxed);
            }
            "position" => {
                let Some(match_id) = frame.match_id.filter(|m| !m.is_empty()) else {
                    me.push(error("bad_frame", "`position` needs a match_id."));
                    return;
                };
                let recorded_at = frame.recorded_at.unwrap_or_default();
                let position = Utf8Bytes::from(
                    json!({"type": "position", "match_id": match_id, "lat": frame.lat,
                        "lng": frame.lng, "accuracy_m": frame.accuracy_m,
                        "recorded_at": recorded_at, "eta": recorded_at})
                    .to_string(),
                );
                if let Some(room) = self.lock().get_mut(&format!("tracking:{match_id}")) {
                    room.subscribers
                        .retain(|_, conn| conn.push(Message::Text(position.clone())));
                }
                self.messages.fetch_add(1, Ordering::Relaxed);
            }
            "read" | "typing" => {}
            _ => {
                me.push(error("bad_frame", "Unknown frame type."));
            }
        }
    }
}

async fn serve_conn(hub: Arc<Hub>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // Boxed: the handshake's state is not kept in every connection's task.
    let accept = Box::pin(tokio_tungstenite::accept_async_with_config(
        stream,
        Some(ws_config()),
    ));
    let Ok(ws) = accept.await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(OUTBOX);
    let kill = Arc::new(Kill::default());
    let me = Conn {
        outbox: tx,
        kill: kill.clone(),
    };
    let id = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    hub.live.fetch_add(1, Ordering::Relaxed);

    // The writer: the outbox in order, a ping every 20 s, then a close frame.
    let writer_kill = kill.clone();
    let writer = tokio::spawn(async move {
        let start = tokio::time::Instant::now() + PING_EVERY;
        let mut ping = tokio::time::interval_at(start, PING_EVERY);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        if sink.send(msg).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let code = match writer_kill.code.load(Ordering::Relaxed) {
            0 => CloseCode::Normal,
            c => CloseCode::from(c),
        };
        let reason = match code {
            CloseCode::Policy => "slow consumer or heartbeat timeout",
            _ => "",
        };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            sink.send(Message::Close(Some(frame))).await?;
            sink.close().await
        })
        .await;
    });

    me.push(Message::Text(Utf8Bytes::from_static(r#"{"type":"hello"}"#)));
    let mut subs: Vec<String> = Vec::new();
    loop {
        let next = tokio::select! {
            () = kill.notify.notified() => break,
            next = tokio::time::timeout(CLIENT_TIMEOUT, source.next()) => next,
        };
        match next {
            Err(_) => {
                kill.code.store(1008, Ordering::Relaxed);
                break;
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(Message::Text(raw)))) => hub.on_text(id, &me, &mut subs, &raw),
            Ok(Some(Ok(Message::Binary(_)))) => {
                me.push(error("bad_frame", "Binary frames are not accepted."));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    {
        let mut rooms = hub.lock();
        for room_id in &subs {
            if let Some(room) = rooms.get_mut(room_id) {
                room.subscribers.remove(&id);
            }
        }
    }
    drop(me); // the writer sees the end of its outbox, flushes it and closes
    let _ = writer.await;
    hub.live.fetch_sub(1, Ordering::Relaxed);
}

async fn run(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    println!("ws_baseline listening on {addr} pid={}", std::process::id());
    let hub = Arc::new(Hub::default());
    let stats = hub.clone();
    tokio::spawn(async move {
        let mut last = (u64::MAX, u64::MAX);
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let now = (
                stats.live.load(Ordering::Relaxed),
                stats.messages.load(Ordering::Relaxed),
            );
            if now != last {
                println!("ws_baseline live={} messages={}", now.0, now.1);
                last = now;
            }
        }
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_conn(hub.clone(), stream));
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                eprintln!("ws_baseline accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut port: Option<u16> = None;
    let mut host = "127.0.0.1".to_owned();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next()) {
            ("--port", Some(v)) => port = v.parse().ok(),
            ("--host", Some(v)) => host = v.clone(),
            _ => {
                eprintln!("usage: ws_baseline --port P [--host 127.0.0.1]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(addr) = port.and_then(|p| format!("{host}:{p}").parse::<SocketAddr>().ok()) else {
        eprintln!("usage: ws_baseline --port P [--host 127.0.0.1]");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws_baseline: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_baseline: {e}");
            ExitCode::from(1)
        }
    }
}
