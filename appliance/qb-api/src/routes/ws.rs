//! `/ws`: live events over WebSocket.
//!
//! Protocol (JSON text frames; see `docs/websocket.md`):
//! 1. The client authenticates: an `Authorization: Bearer` header on the
//!    upgrade request, or, from browsers, a first message
//!    `{"auth": "<access token or API key>"}` within `limits.ws_auth_secs`
//!    (5 s), having sent at most [`WS_PRE_AUTH_BYTES`] before.
//! 2. It subscribes and unsubscribes: `{"subscribe": ["ticks:IF2409",
//!    "bars:IF2409:1m", "orders"]}`, `{"unsubscribe": [...]}`, at most
//!    `limits.ws_subscriptions` channels.
//! 3. The server sends `{"topic": "<channel>", "data": {...}}` per event and
//!    a WebSocket ping every 30 s.
//! 4. The session is checked again every `limits.ws_recheck_secs` (5 s:
//!    token expiry, logout,
//!    a disabled, deleted or changed user): when it has ended the server
//!    sends `{"topic": "session_ended", ...}` and closes (1008). A client
//!    keeps a socket open across token renewals by sending
//!    `{"auth": "<new token>"}` for the same user.
//!
//! Private channels: `orders`, `fills`, `positions` and `strategies` carry
//! events of one account each (their `account` field) and deliver only
//! those of accounts the listener reaches ([`crate::auth::access`]: an
//! admin all, others their granted accounts), as read again at every
//! session check; an event without an account goes to admins only. `jobs`
//! and the market channels go to every listener (research is read by the
//! whole team, `SECURITY.md`).
//!
//! Bounds: messages of `limits.ws_message_bytes` (16 KiB), connections per
//! user (`ws_per_user`) and per client address (`ws_per_address`), beyond
//! which the upgrade (address) or the authentication (user) is refused.
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
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use futures_util::stream::{SelectAll, SplitSink, Stream, StreamExt};
use qb_core::market::{Bar, BarBuilder, Interval, TickBatch};
use qb_core::seams::Event;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use qb_core::config::WS_PRE_AUTH_BYTES;

use crate::auth::Reach;
use crate::auth::guard::{Principal, authenticate};
use crate::middleware::client_ip::ClientIp;
use crate::problem::ApiError;
use crate::state::AppState;

/// Open connections per user and per client address.
#[derive(Default)]
pub struct Counts {
    open: parking_lot::Mutex<HashMap<String, usize>>,
}

/// One counted connection; uncounted when dropped.
pub struct Slot {
    counts: Arc<Counts>,
    key: String,
}

impl Counts {
    /// Counts a connection under `key` unless `cap` are open already.
    fn take(self: &Arc<Self>, key: String, cap: usize) -> Option<Slot> {
        let mut open = self.open.lock();
        let n = open.entry(key.clone()).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: self.clone(),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = format!("Bearer {token}").parse() {
        h.insert(axum::http::header::AUTHORIZATION, v);
    }
    h
}

/// Channels without a parameter, and the pub/sub topic each follows.
const PLAIN: &[(&str, &str)] = &[
    ("ticks", crate::TICKS_TOPIC),
    ("jobs", qb_jobs::JOBS_TOPIC),
    ("orders", qb_live::desk::ORDERS_TOPIC),
    ("fills", qb_live::desk::FILLS_TOPIC),
    ("positions", qb_live::desk::POSITIONS_TOPIC),
    ("strategies", qb_live::strategies::STRATEGIES_TOPIC),
];
/// Topics whose events belong to one account (their `account` field).
const ACCOUNT_TOPICS: &[&str] = &[
    qb_live::desk::ORDERS_TOPIC,
    qb_live::desk::FILLS_TOPIC,
    qb_live::desk::POSITIONS_TOPIC,
    qb_live::strategies::STRATEGIES_TOPIC,
];

/// Whether a listener reaching `reach` may see `data`, an event of `topic`.
fn visible(reach: &Reach, topic: &str, data: &serde_json::Value) -> bool {
    if !ACCOUNT_TOPICS.contains(&topic) {
        return true;
    }
    match data["account"].as_str() {
        Some(account) => reach.allows(account),
        None => *reach == Reach::All,
    }
}

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
    ClientIp(ip): ClientIp,
    connection: Option<axum::Extension<crate::server::ConnectionSlot>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let l = &state.config.limits;
    let Some(address_slot) = state.ws_counts.take(format!("ip:{ip}"), l.ws_per_address) else {
        return ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too-many-connections",
            format!(
                "{} WebSocket connections from {ip} are open already",
                l.ws_per_address
            ),
        )
        .into_response();
    };
    // A bearer header authenticates at once; a bad one is not fatal here
    // (the client may still authenticate in band).
    let pre_auth = match authenticate(&state, &headers).await {
        Ok(p) => Some((p, headers)),
        Err(_) => None,
    };
    let max = l.ws_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            // The socket keeps its place under http.max_connections.
            let _connection = connection;
            session(state, socket, pre_auth, address_slot).await
        })
}

/// Who is listening: the principal, the credential to check it again
/// with, the accounts it reaches (as of the last check), and its place in
/// the per-user count.
struct Listener {
    principal: Principal,
    headers: HeaderMap,
    reach: Reach,
    _slot: Slot,
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

/// Admits `principal` (reaching `reach`) under the per-user cap, or says
/// why not.
fn admit(
    state: &AppState,
    principal: Principal,
    headers: HeaderMap,
    reach: Reach,
) -> Result<Listener, String> {
    let cap = state.config.limits.ws_per_user;
    let slot = state
        .ws_counts
        .take(format!("user:{}", principal.user_id), cap)
        .ok_or_else(|| format!("{cap} WebSocket connections of this user are open already"))?;
    Ok(Listener {
        principal,
        headers,
        reach,
        _slot: slot,
    })
}

fn session_ended(outbox: &mut Outbox, detail: &str) {
    outbox.push(frame(
        "session_ended",
        serde_json::json!({ "detail": detail }),
    ));
    outbox.push(Message::Close(Some(CloseFrame {
        code: 1008,
        reason: "session ended".into(),
    })));
}

async fn session(
    state: AppState,
    socket: WebSocket,
    pre_auth: Option<(Principal, HeaderMap)>,
    _address_slot: Slot,
) {
    let (sink, mut incoming) = socket.split();
    let (out, out_rx) = mpsc::channel::<Message>(QUEUE);
    let (slow_tx, slow_rx) = oneshot::channel::<String>();
    let writer = tokio::spawn(writer(sink, out_rx, slow_rx));
    let mut outbox = Outbox {
        out,
        slow: Some(slow_tx),
    };
    let limits = state.config.limits.clone();
    let auth_deadline = tokio::time::Instant::now() + Duration::from_secs(limits.ws_auth_secs);
    let mut listener: Option<Listener> = None;
    if let Some((p, h)) = pre_auth {
        let admitted = match p.reach(&state).await {
            Ok(reach) => admit(&state, p, h, reach),
            Err(e) => Err(e.detail),
        };
        match admitted {
            Ok(l) => listener = Some(l),
            Err(e) => {
                outbox.push(frame("error", serde_json::json!({ "detail": e })));
                drop(outbox);
                let _ = writer.await;
                return;
            }
        }
    }
    let mut pre_auth_bytes = 0usize;
    let mut recheck = tokio::time::interval(Duration::from_secs(limits.ws_recheck_secs));
    recheck.reset();
    let mut streams: SelectAll<Events> = SelectAll::new();
    // One feed per pub/sub topic; channels filter it.
    let mut followed: HashSet<&'static str> = HashSet::new();
    let mut active: HashMap<String, Channel> = HashMap::new();
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    'session: loop {
        tokio::select! {
            _ = tokio::time::sleep_until(auth_deadline), if listener.is_none() => {
                outbox.push(frame("error", serde_json::json!({"detail": "authentication required"})));
                break;
            }
            _ = recheck.tick(), if listener.is_some() => {
                let l = listener.as_ref().expect("checked");
                match authenticate(&state, &l.headers).await {
                    Ok(p) if p.user_id == l.principal.user_id => {
                        // A changed role ends the session (token version);
                        // keep the principal current all the same, and
                        // the accounts it reaches (grants come and go).
                        let reach = match p.reach(&state).await {
                            Ok(r) => r,
                            Err(e) => {
                                session_ended(&mut outbox, &e.detail);
                                break;
                            }
                        };
                        let l = listener.as_mut().expect("checked");
                        l.principal = p;
                        l.reach = reach;
                    }
                    Ok(_) => {
                        session_ended(&mut outbox, "the credential names another user");
                        break;
                    }
                    Err(e) => {
                        session_ended(&mut outbox, &e.detail);
                        break;
                    }
                }
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
                if !listener.as_ref().is_some_and(|l| visible(&l.reach, topic, &e.data)) {
                    continue;
                }
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
                    Some(Ok(Message::Binary(b) | Message::Ping(b) | Message::Pong(b))) => {
                        if listener.is_none() {
                            pre_auth_bytes += b.len();
                        }
                        continue;
                    }
                };
                if listener.is_none() {
                    pre_auth_bytes += text.len();
                    if pre_auth_bytes > WS_PRE_AUTH_BYTES {
                        outbox.push(frame("error", serde_json::json!({
                            "detail": format!("more than {WS_PRE_AUTH_BYTES} bytes before authenticating")
                        })));
                        break;
                    }
                }
                let msg: ClientMessage = match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        outbox.push(frame("error", serde_json::json!({"detail": format!("bad message: {e}")})));
                        continue;
                    }
                };
                if let Some(token) = msg.auth {
                    let h = bearer_headers(&token);
                    let p = match authenticate(&state, &h).await {
                        Ok(p) => p,
                        Err(e) => {
                            outbox.push(frame("error", serde_json::json!({"detail": e.detail})));
                            break;
                        }
                    };
                    let reach = match p.reach(&state).await {
                        Ok(r) => r,
                        Err(e) => {
                            outbox.push(frame("error", serde_json::json!({"detail": e.detail})));
                            break;
                        }
                    };
                    let (username, role) = (p.username.clone(), p.role);
                    match listener.as_mut() {
                        // A renewed credential of the same user.
                        Some(l) if l.principal.user_id == p.user_id => {
                            l.principal = p;
                            l.headers = h;
                            l.reach = reach;
                        }
                        Some(_) => {
                            outbox.push(frame("error", serde_json::json!({
                                "detail": "a connection stays with the user it was opened for"
                            })));
                            break;
                        }
                        None => match admit(&state, p, h, reach) {
                            Ok(l) => listener = Some(l),
                            Err(e) => {
                                outbox.push(frame("error", serde_json::json!({ "detail": e })));
                                break;
                            }
                        },
                    }
                    outbox.push(frame("authenticated", serde_json::json!({"username": username, "role": role})));
                }
                let asked = msg.subscribe.is_some() || msg.unsubscribe.is_some();
                if asked && listener.is_none() {
                    outbox.push(frame("error", serde_json::json!({"detail": "authenticate first"})));
                    continue;
                }
                for name in msg.unsubscribe.unwrap_or_default() {
                    active.remove(&name);
                }
                for name in msg.subscribe.unwrap_or_default() {
                    if !active.contains_key(&name) && active.len() >= limits.ws_subscriptions {
                        outbox.push(frame("error", serde_json::json!({
                            "detail": format!("at most {} channels per connection; {name:?} not added", limits.ws_subscriptions)
                        })));
                        continue;
                    }
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
