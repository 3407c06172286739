//! `/ws`: live events over WebSocket (ticks, job progress).
//!
//! Protocol (JSON text frames):
//! 1. The client authenticates: an `Authorization: Bearer` header on the
//!    upgrade request, or, from browsers, a first message
//!    `{"auth": "<access token or API key>"}` within 10 s.
//! 2. It subscribes: `{"subscribe": ["ticks", "jobs"]}` (again to add topics).
//! 3. The server sends `{"topic": "...", "data": {...}}` per event. A client
//!    that falls behind gets `{"topic": "lagged", "data": {"missed": n}}`;
//!    publishers never wait for it.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{SelectAll, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::auth::guard::authenticate;
use crate::state::AppState;

/// Topics a client may subscribe to.
pub const TOPICS: &[&str] = &[crate::TICKS_TOPIC, qb_jobs::JOBS_TOPIC];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    auth: Option<String>,
    subscribe: Option<Vec<String>>,
}

pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let pre_auth = authenticate(&state, &headers).await.ok();
    ws.on_upgrade(move |socket| session(state, socket, pre_auth.is_some()))
}

fn frame(topic: &str, data: serde_json::Value) -> Message {
    Message::Text(
        serde_json::json!({ "topic": topic, "data": data })
            .to_string()
            .into(),
    )
}

async fn session(state: AppState, mut socket: WebSocket, mut authed: bool) {
    let auth_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut streams: SelectAll<BroadcastStream<std::sync::Arc<qb_core::seams::Event>>> =
        SelectAll::new();
    let mut subscribed: Vec<String> = Vec::new();
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(auth_deadline), if !authed => {
                let _ = socket.send(frame("error", serde_json::json!({"detail": "authentication required"}))).await;
                return;
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            event = streams.next(), if !streams.is_empty() => {
                let msg = match event {
                    Some(Ok(e)) => frame(&e.topic, e.data.clone()),
                    Some(Err(BroadcastStreamRecvError::Lagged(n))) => frame("lagged", serde_json::json!({"missed": n})),
                    None => continue,
                };
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let msg: ClientMessage = match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = socket.send(frame("error", serde_json::json!({"detail": format!("bad message: {e}")}))).await;
                        continue;
                    }
                };
                if let Some(token) = msg.auth {
                    let mut h = HeaderMap::new();
                    if let Ok(v) = format!("Bearer {token}").parse() {
                        h.insert(axum::http::header::AUTHORIZATION, v);
                    }
                    match authenticate(&state, &h).await {
                        Ok(p) => {
                            authed = true;
                            let _ = socket.send(frame("authenticated", serde_json::json!({"username": p.username, "role": p.role}))).await;
                        }
                        Err(e) => {
                            let _ = socket.send(frame("error", serde_json::json!({"detail": e.detail}))).await;
                            return;
                        }
                    }
                }
                if let Some(topics) = msg.subscribe {
                    if !authed {
                        let _ = socket.send(frame("error", serde_json::json!({"detail": "authenticate first"}))).await;
                        continue;
                    }
                    for t in topics {
                        if !TOPICS.contains(&t.as_str()) {
                            let _ = socket.send(frame("error", serde_json::json!({"detail": format!("unknown topic {t:?}; topics: {}", TOPICS.join(", "))}))).await;
                            continue;
                        }
                        if !subscribed.contains(&t) {
                            streams.push(BroadcastStream::new(state.pubsub.subscribe(&t)));
                            subscribed.push(t);
                        }
                    }
                    let _ = socket.send(frame("subscribed", serde_json::json!({"topics": subscribed}))).await;
                }
            }
        }
    }
}
