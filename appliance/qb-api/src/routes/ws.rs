//! `/ws`: live events over WebSocket.
//!
//! Protocol (JSON text frames; see `docs/websocket.md`):
//! 1. The client authenticates: an `Authorization: Bearer` header on the
//!    upgrade request, or, from browsers, a first message
//!    `{"auth": "<access token or API key>"}` within 10 s.
//! 2. It subscribes and unsubscribes: `{"subscribe": ["ticks:IF2409",
//!    "bars:IF2409:1m", "orders"]}`, `{"unsubscribe": [...]}`.
//! 3. The server sends `{"topic": "<channel>", "data": {...}}` per event and
//!    a WebSocket ping every 30 s.
//!
//! Each connection has a bounded outgoing queue. A consumer that falls
//! behind (queue full, or its feed lagged) gets a final
//! `{"topic": "slow_consumer", ...}` frame where the socket still takes one,
//! and is disconnected: publishers and other connections never wait for it.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::SinkExt;
use futures_util::stream::{SelectAll, SplitSink, Stream, StreamExt};
use qb_core::market::{Bar, BarBuilder, Interval, TickBatch};
use qb_core::seams::Event;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::auth::guard::authenticate;
use crate::state::AppState;

/// Channels without a parameter, and the pub/sub topic each follows.
const PLAIN: &[(&str, &str)] = &[
    ("ticks", crate::TICKS_TOPIC),
    ("jobs", qb_jobs::JOBS_TOPIC),
    ("orders", qb_live::desk::ORDERS_TOPIC),
    ("fills", qb_live::desk::FILLS_TOPIC),
    ("positions", qb_live::desk::POSITIONS_TOPIC),
    ("strategies", qb_live::strategies::STRATEGIES_TOPIC),
];
/// Frames waiting for one client.
pub const QUEUE: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    auth: Option<String>,
    subscribe: Option<Vec<String>>,
    unsubscribe: Option<Vec<String>>,
}

/// What a channel name asks for; a bar channel holds its bar in progress.
enum Channel {
    Plain(&'static str),
    Ticks(String),
    Bars(String, BarBuilder),
}

impl Channel {
    fn parse(name: &str) -> Result<Self, String> {
        if let Some((_, topic)) = PLAIN.iter().find(|(n, _)| *n == name) {
            return Ok(Channel::Plain(topic));
        }
        let parts: Vec<&str> = name.split(':').collect();
        match parts.as_slice() {
            ["ticks", sym] => {
                qb_core::market::check_symbol(sym)?;
                Ok(Channel::Ticks(sym.to_string()))
            }
            ["bars", sym, interval] => {
                qb_core::market::check_symbol(sym)?;
                let i: Interval = interval.parse()?;
                Ok(Channel::Bars(sym.to_string(), BarBuilder::new(i)))
            }
            _ => Err(format!(
                "unknown channel {name:?}; channels: {}, ticks:SYMBOL, bars:SYMBOL:INTERVAL",
                PLAIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    fn topic(&self) -> &'static str {
        match self {
            Channel::Plain(t) => t,
            Channel::Ticks(_) | Channel::Bars(..) => crate::TICKS_TOPIC,
        }
    }
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

type Events = Pin<
    Box<dyn Stream<Item = (&'static str, Result<Arc<Event>, BroadcastStreamRecvError>)> + Send>,
>;

/// How long a cut-off client has to take its last notice.
const NOTICE_WINDOW: Duration = Duration::from_secs(10);

/// Writes queued frames in order. When told the client is too slow, drops
/// what is still queued (stale by now) and gives the socket
/// [`NOTICE_WINDOW`] to take a `slow_consumer` frame and a close frame.
async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    slow: oneshot::Receiver<String>,
) {
    tokio::pin!(slow);
    let mut watching = true;
    let why = 'writing: loop {
        let m = tokio::select! {
            biased;
            w = &mut slow, if watching => match w {
                Ok(why) => break 'writing why,
                // The session ended normally: drain what is queued.
                Err(_) => { watching = false; continue 'writing }
            },
            m = rx.recv() => m,
        };
        let Some(m) = m else { return };
        let send = sink.send(m);
        tokio::pin!(send);
        loop {
            tokio::select! {
                biased;
                w = &mut slow, if watching => match w {
                    Ok(why) => break 'writing why,
                    Err(_) => watching = false,
                },
                r = &mut send => {
                    if r.is_err() { return }
                    break;
                }
            }
        }
    };
    drop(rx);
    tracing::info!(reason = %why, "websocket client too slow: disconnected");
    let notice = frame("slow_consumer", serde_json::json!({"detail": why}));
    let close = Message::Close(Some(CloseFrame {
        code: 1008,
        reason: "slow consumer".into(),
    }));
    let _ = tokio::time::timeout(NOTICE_WINDOW, async {
        sink.send(notice).await?;
        sink.send(close).await
    })
    .await;
}

/// The client's bounded queue, and the way to tell the writer it is too
/// slow.
struct Outbox {
    out: mpsc::Sender<Message>,
    slow: Option<oneshot::Sender<String>>,
}

impl Outbox {
    /// Queues a frame; false when the client is too slow (and is now told).
    fn push(&mut self, m: Message) -> bool {
        match self.out.try_send(m) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow(format!("more than {QUEUE} frames waiting"));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn slow(&mut self, why: String) {
        if let Some(tx) = self.slow.take() {
            let _ = tx.send(why);
        }
    }
}

fn bar_json(b: &Bar, closed: bool) -> serde_json::Value {
    serde_json::json!({"ts": b.ts, "open": b.open, "high": b.high, "low": b.low,
                       "close": b.close, "volume": b.volume, "closed": closed})
}

async fn session(state: AppState, socket: WebSocket, mut authed: bool) {
    let (sink, mut incoming) = socket.split();
    let (out, out_rx) = mpsc::channel::<Message>(QUEUE);
    let (slow_tx, slow_rx) = oneshot::channel::<String>();
    let writer = tokio::spawn(writer(sink, out_rx, slow_rx));
    let mut outbox = Outbox {
        out,
        slow: Some(slow_tx),
    };
    let auth_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut streams: SelectAll<Events> = SelectAll::new();
    // One feed per pub/sub topic; channels filter it.
    let mut followed: HashSet<&'static str> = HashSet::new();
    let mut active: HashMap<String, Channel> = HashMap::new();
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    'session: loop {
        tokio::select! {
            _ = tokio::time::sleep_until(auth_deadline), if !authed => {
                outbox.push(frame("error", serde_json::json!({"detail": "authentication required"})));
                break;
            }
            _ = ping.tick() => {
                if !outbox.push(Message::Ping(Vec::new().into())) {
                    break;
                }
            }
            event = streams.next(), if !streams.is_empty() => {
                let Some((topic, event)) = event else { continue };
                let e = match event {
                    Ok(e) => e,
                    Err(BroadcastStreamRecvError::Lagged(n)) => {
                        outbox.slow(format!("missed {n} events of {topic}"));
                        break;
                    }
                };
                let mut ok = true;
                // Parsed once per event, for however many bar channels want it.
                let mut batch: Option<Option<TickBatch>> = None;
                for (name, chan) in active.iter_mut().filter(|(_, c)| c.topic() == topic) {
                    match chan {
                        Channel::Plain(_) => ok &= outbox.push(frame(name, e.data.clone())),
                        Channel::Ticks(sym) if e.data["symbol"] == sym.as_str() => {
                            ok &= outbox.push(frame(name, e.data.clone()));
                        }
                        Channel::Bars(sym, builder) if e.data["symbol"] == sym.as_str() => {
                            let parsed = batch.get_or_insert_with(|| TickBatch::deserialize(&e.data).ok());
                            let Some(b) = parsed.as_ref() else { continue };
                            for i in 0..b.ts.len() {
                                if let Some(done) = builder.push(b.ts[i], b.price[i], b.size[i]) {
                                    ok &= outbox.push(frame(name, bar_json(&done, true)));
                                }
                            }
                            if let Some(bar) = builder.current() {
                                ok &= outbox.push(frame(name, bar_json(bar, false)));
                            }
                        }
                        Channel::Ticks(_) | Channel::Bars(..) => {}
                    }
                    if !ok {
                        break 'session;
                    }
                }
            }
            msg = incoming.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let msg: ClientMessage = match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        outbox.push(frame("error", serde_json::json!({"detail": format!("bad message: {e}")})));
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
                            outbox.push(frame("authenticated", serde_json::json!({"username": p.username, "role": p.role})));
                        }
                        Err(e) => {
                            outbox.push(frame("error", serde_json::json!({"detail": e.detail})));
                            break;
                        }
                    }
                }
                let asked = msg.subscribe.is_some() || msg.unsubscribe.is_some();
                if asked && !authed {
                    outbox.push(frame("error", serde_json::json!({"detail": "authenticate first"})));
                    continue;
                }
                for name in msg.unsubscribe.unwrap_or_default() {
                    active.remove(&name);
                }
                for name in msg.subscribe.unwrap_or_default() {
                    let chan = match Channel::parse(&name) {
                        Ok(c) => c,
                        Err(e) => {
                            outbox.push(frame("error", serde_json::json!({"detail": e})));
                            continue;
                        }
                    };
                    let topic = chan.topic();
                    if followed.insert(topic) {
                        let rx = state.pubsub.subscribe(topic);
                        streams.push(Box::pin(BroadcastStream::new(rx).map(move |r| (topic, r))));
                    }
                    active.insert(name, chan);
                }
                if asked {
                    let mut names: Vec<&String> = active.keys().collect();
                    names.sort();
                    outbox.push(frame("subscribed", serde_json::json!({"topics": names})));
                }
            }
        }
    }
    // The writer sends what is queued (or the slow-consumer notice), then
    // ends. Meanwhile the client's frames (pongs, its close reply) are read
    // and dropped: closing a socket with unread input would reset it and
    // lose what the client has not read yet.
    drop(outbox);
    let drain = async { while let Some(Ok(_)) = incoming.next().await {} };
    let _ = tokio::time::timeout(NOTICE_WINDOW + Duration::from_secs(2), async {
        tokio::join!(writer, drain)
    })
    .await;
}
