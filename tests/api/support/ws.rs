//! A real WebSocket client for the tests (tokio-tungstenite against the real server).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::app::{TestApp, TestUser};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn ws_url(app: &TestApp) -> String {
    format!(
        "ws://127.0.0.1:{}/api/ws",
        app.address.rsplit(':').next().unwrap()
    )
}

/// Opens a socket as `user` (without consuming the `hello`).
pub async fn connect(app: &TestApp, user: &TestUser) -> Socket {
    let mut req = ws_url(app).into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.access_token).parse().unwrap(),
    );
    req.headers_mut()
        .insert("x-ratelimit-bypass", app.bypass().1.parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    socket
}

/// The next JSON frame, skipping pings; fails after 10 s.
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// The next frame of `kind`, skipping others; fails after 10 s.
pub async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let v = next_json(socket).await;
        if v["type"] == kind {
            return v;
        }
    }
}

pub async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Waits for the close frame; returns its code.
pub async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closes in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}
