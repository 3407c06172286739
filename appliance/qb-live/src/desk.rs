//! The desk: accounts, order management and the broker behind one lock.
//!
//! Every order path (trading API, strategy runners) goes through
//! [`Desk::submit`] and [`Desk::cancel`]; quotes come in through
//! [`Desk::on_tick`]. Under the lock a call validates, checks risk, books,
//! and writes every change it made (order, fill, account) in one
//! [`KvStore::write`] batch; only then does it answer and publish. So an
//! acknowledged order or fill is durable, and a crash between two calls
//! loses nothing acknowledged.
//!
//! Persisted (KvStore namespace `trading`): `acct/<account>` (book,
//! strategy sub-books, HALTED flag, limits, the day's starting equity),
//! `order/<account>/<order id>` (every order), `fill/<account>/<seq>`.
//! [`Desk::open`] rebuilds everything from them: positions, open orders
//! (placed with the broker again), HALTED.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use qb_core::market::Instrument;
use qb_core::{KvStore, KvWrite, MetaStore, PubSub};
use qb_trading::ledger::Ledger;
use rust_decimal::Decimal;
use tokio::sync::Mutex;

use crate::broker::{Broker, Execution};
use crate::error::{LiveError, invalid};
use crate::model::*;
use crate::risk::{Exposure, Rejection, RiskLimits};

const NS: &str = "trading";
/// PubSub topics the desk publishes on.
pub const ORDERS_TOPIC: &str = "orders";
pub const FILLS_TOPIC: &str = "fills";
pub const POSITIONS_TOPIC: &str = "positions";
/// The sub-book of manual orders.
pub const MANUAL: &str = "manual";

/// What [`Desk::submit`] answers: the order as persisted, and whether the
/// client id had been used before (then the order is the earlier one,
/// unchanged). Decided under the desk's lock, so two concurrent first
/// submissions of one client id give one order and one `repeat: false`.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub order: Order,
    pub repeat: bool,
}

impl Placed {
    fn new(order: Order) -> Self {
        Self {
            order,
            repeat: false,
        }
    }
}

/// Figures of an account.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub name: String,
    pub halted: bool,
    pub halted_reason: Option<String>,
    #[schema(value_type = String)]
    pub initial_cash: Decimal,
    #[schema(value_type = String)]
    pub cash: Decimal,
    #[schema(value_type = String)]
    pub equity: Decimal,
    #[schema(value_type = String)]
    pub margin: Decimal,
    #[schema(value_type = String)]
    pub unrealized: Decimal,
    /// Today's PnL: equity minus the day's starting equity.
    #[schema(value_type = String)]
    pub day_pnl: Decimal,
    /// PnL (realized − fees + unrealized) per strategy; manual orders
    /// under `manual`.
    #[schema(value_type = BTreeMap<String, String>)]
    pub pnl_by_strategy: BTreeMap<String, Decimal>,
    pub open_orders: usize,
    pub limits: RiskLimits,
}

/// The latest quote of a symbol as the desk knows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct QuoteView {
    pub ts: i64,
    #[schema(value_type = String)]
    pub last: Decimal,
    #[schema(value_type = String)]
    pub bid: Decimal,
    #[schema(value_type = String)]
    pub ask: Decimal,
}

/// A position as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct PositionView {
    pub account: String,
    /// `None`: the account's net position; otherwise one strategy's.
    pub strategy: Option<String>,
    pub symbol: String,
    #[schema(value_type = String)]
    pub qty: Decimal,
    #[schema(value_type = String)]
    pub avg_price: Decimal,
    #[schema(value_type = String)]
    pub mark: Decimal,
    #[schema(value_type = String)]
    pub realized: Decimal,
    #[schema(value_type = String)]
    pub fees: Decimal,
}

struct Account {
    doc: AccountDoc,
    ledger: Ledger,
    subs: BTreeMap<String, Ledger>,
    open: BTreeMap<String, Order>,
    /// (source, client id) → order id, for idempotent submission.
    by_client: HashMap<(String, String), String>,
    /// Submission times (ms) within the last second, per scope.
    recent: HashMap<String, VecDeque<i64>>,
}

struct Inner {
    accounts: BTreeMap<String, Account>,
    quotes: HashMap<String, Quote>,
    instruments: HashMap<String, Instrument>,
    broker: Box<dyn Broker>,
}

pub struct Desk {
    inner: Mutex<Inner>,
    kv: Arc<dyn KvStore>,
    meta: Arc<dyn MetaStore>,
    pubsub: Arc<dyn PubSub>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializable")
}

fn put(key: String, value: Vec<u8>) -> KvWrite {
    KvWrite::Put {
        ns: NS.into(),
        key,
        value,
    }
}

fn delete(key: String) -> KvWrite {
    KvWrite::Delete { ns: NS.into(), key }
}

fn order_key(o: &Order) -> String {
    format!("order/{}/{}", o.account, o.id)
}

fn day_of(ts_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ts_ns)
        .date_naive()
        .to_string()
}

fn source(strategy: Option<&str>) -> String {
    strategy.unwrap_or(MANUAL).to_string()
}

impl Account {
    fn book_of(ledger: &Ledger) -> Book {
        Book {
            cash: ledger.cash,
            positions: ledger.positions.clone(),
        }
    }

    /// The persisted form, refreshed from the ledgers.
    fn doc(&mut self) -> Vec<u8> {
        self.doc.book = Self::book_of(&self.ledger);
        self.doc.strategies = self
            .subs
            .iter()
            .map(|(k, l)| (k.clone(), Self::book_of(l)))
            .collect();
        json(&self.doc)
    }

    fn sub(&mut self, name: &str, instruments: &HashMap<String, Instrument>) -> &mut Ledger {
        self.subs
            .entry(name.to_string())
            .or_insert_with(|| Ledger::new(Decimal::ZERO, instruments.values().cloned()))
    }

    fn view(&self) -> AccountView {
        let equity = self.ledger.equity();
        AccountView {
            name: self.doc.name.clone(),
            halted: self.doc.halted,
            halted_reason: self.doc.halted_reason.clone(),
            initial_cash: self.doc.initial_cash,
            cash: self.ledger.cash,
            equity,
            margin: self.ledger.margin(None),
            unrealized: self.ledger.unrealized(),
            day_pnl: equity - self.doc.day_start_equity,
            pnl_by_strategy: self
                .subs
                .iter()
                .map(|(k, l)| (k.clone(), l.equity()))
                .collect(),
            open_orders: self.open.len(),
            limits: self.doc.limits.clone(),
        }
    }
}

impl Desk {
    /// Restores every account from `kv`, creating `default_account` with
    /// `initial_cash` if there is none, and places open orders with
    /// `broker` again.
    pub async fn open(
        kv: Arc<dyn KvStore>,
        meta: Arc<dyn MetaStore>,
        pubsub: Arc<dyn PubSub>,
        mut broker: Box<dyn Broker>,
        default_account: &str,
        initial_cash: Decimal,
    ) -> Result<Self, LiveError> {
        let mut accounts = BTreeMap::new();
        let mut instruments = HashMap::new();
        let mut symbols: Vec<String> = Vec::new();
        let docs: Vec<AccountDoc> = kv
            .scan(NS, "acct/")
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        for d in &docs {
            symbols.extend(d.book.positions.keys().cloned());
            for b in d.strategies.values() {
                symbols.extend(b.positions.keys().cloned());
            }
        }
        let orders: Vec<Order> = kv
            .scan(NS, "order/")
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        symbols.extend(orders.iter().map(|o| o.symbol.clone()));
        symbols.sort();
        symbols.dedup();
        for s in symbols {
            let inst = meta
                .instrument(&s)
                .await?
                .unwrap_or_else(|| Instrument::with_defaults(&s));
            instruments.insert(s, inst);
        }
        for doc in docs {
            let mut ledger = Ledger::new(doc.book.cash, instruments.values().cloned());
            ledger.positions = doc.book.positions.clone();
            let subs = doc
                .strategies
                .iter()
                .map(|(k, b)| {
                    let mut l = Ledger::new(b.cash, instruments.values().cloned());
                    l.positions = b.positions.clone();
                    (k.clone(), l)
                })
                .collect();
            accounts.insert(
                doc.name.clone(),
                Account {
                    doc,
                    ledger,
                    subs,
                    open: BTreeMap::new(),
                    by_client: HashMap::new(),
                    recent: HashMap::new(),
                },
            );
        }
        for o in orders {
            let Some(a) = accounts.get_mut(&o.account) else {
                continue;
            };
            a.by_client.insert(
                (source(o.strategy.as_deref()), o.client_id.clone()),
                o.id.clone(),
            );
            if o.state.is_open() {
                // It was working at the venue before the restart.
                let mut o = o;
                o.rested = true;
                let tick = instruments
                    .get(&o.symbol)
                    .map_or(Decimal::ZERO, |i| i.price_tick);
                if let Err(e) = broker.place(&o, tick) {
                    tracing::warn!(order = %o.id, error = %e, "restored order refused by the broker");
                }
                a.open.insert(o.id.clone(), o);
            }
        }
        let desk = Self {
            inner: Mutex::new(Inner {
                accounts,
                quotes: HashMap::new(),
                instruments,
                broker,
            }),
            kv,
            meta,
            pubsub,
        };
        if !desk
            .inner
            .lock()
            .await
            .accounts
            .contains_key(default_account)
        {
            desk.create_account(default_account, initial_cash, RiskLimits::default())
                .await?;
        }
        Ok(desk)
    }

    pub async fn create_account(
        &self,
        name: &str,
        initial_cash: Decimal,
        limits: RiskLimits,
    ) -> Result<AccountView, LiveError> {
        qb_core::market::check_symbol(name).map_err(|e| invalid("name", e))?;
        if initial_cash <= Decimal::ZERO {
            return Err(invalid("initial_cash", "must be positive"));
        }
        let mut inner = self.inner.lock().await;
        if inner.accounts.contains_key(name) {
            return Err(LiveError::Conflict(format!("account {name} exists")));
        }
        let ledger = Ledger::new(initial_cash, inner.instruments.values().cloned());
        let mut account = Account {
            doc: AccountDoc {
                name: name.into(),
                initial_cash,
                book: Book::default(),
                strategies: BTreeMap::new(),
                halted: false,
                halted_reason: None,
                limits,
                strategy_limits: BTreeMap::new(),
                day: String::new(),
                day_start_equity: initial_cash,
                strategy_day_start: BTreeMap::new(),
                next_fill_seq: 1,
            },
            ledger,
            subs: BTreeMap::new(),
            open: BTreeMap::new(),
            by_client: HashMap::new(),
            recent: HashMap::new(),
        };
        self.kv
            .write(vec![put(format!("acct/{name}"), account.doc())])
            .await?;
        let view = account.view();
        inner.accounts.insert(name.into(), account);
        Ok(view)
    }

    /// Sets the limits of an account, or of one strategy in it.
    pub async fn set_limits(
        &self,
        account: &str,
        strategy: Option<&str>,
        limits: RiskLimits,
    ) -> Result<(), LiveError> {
        let mut inner = self.inner.lock().await;
        let a = account_mut(&mut inner.accounts, account)?;
        match strategy {
            Some(s) => {
                a.doc.strategy_limits.insert(s.into(), limits);
            }
            None => a.doc.limits = limits,
        }
        let doc = a.doc();
        self.kv
            .write(vec![put(format!("acct/{account}"), doc)])
            .await?;
        Ok(())
    }

    async fn instrument(&self, inner: &mut Inner, symbol: &str) -> Result<Instrument, LiveError> {
        if let Some(i) = inner.instruments.get(symbol) {
            return Ok(i.clone());
        }
        let inst = self
            .meta
            .instrument(symbol)
            .await?
            .unwrap_or_else(|| Instrument::with_defaults(symbol));
        for a in inner.accounts.values_mut() {
            a.ledger.add_instrument(inst.clone());
            for l in a.subs.values_mut() {
                l.add_instrument(inst.clone());
            }
        }
        inner.instruments.insert(symbol.into(), inst.clone());
        Ok(inst)
    }

    /// Submits an order for `account` from `strategy` (`None`: manual).
    /// The answer is the order as persisted: accepted (or already filled),
    /// or rejected with the rule and the numbers. Resubmitting a client id
    /// returns the existing order unchanged.
    pub async fn submit(
        &self,
        account: &str,
        strategy: Option<&str>,
        req: OrderRequest,
    ) -> Result<Placed, LiveError> {
        if req.client_id.is_empty() || req.client_id.len() > 64 {
            return Err(invalid("client_id", "1 to 64 characters"));
        }
        qb_core::market::check_symbol(&req.symbol).map_err(|e| invalid("symbol", e))?;
        if req.qty <= Decimal::ZERO {
            return Err(invalid("qty", "must be positive"));
        }
        match (req.order_type, req.price) {
            (OrderType::Market, Some(_)) => {
                return Err(invalid("price", "a market order has no price"));
            }
            (OrderType::Limit | OrderType::Stop, None) => {
                return Err(invalid("price", "limit and stop orders need a price"));
            }
            (_, Some(p)) if p <= Decimal::ZERO => {
                return Err(invalid("price", "must be positive"));
            }
            _ => {}
        }
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        let src = source(strategy);
        {
            let a = account_mut(&mut inner.accounts, account)?;
            if let Some(id) = a.by_client.get(&(src.clone(), req.client_id.clone())) {
                let id = id.clone();
                drop(guard);
                let order = self.order(account, &id).await?;
                return Ok(Placed {
                    order,
                    repeat: true,
                });
            }
        }
        let inst = self.instrument(inner, &req.symbol).await?;
        let now = now_ms();
        let mut order = Order {
            id: uuid::Uuid::now_v7().to_string(),
            account: account.into(),
            strategy: strategy.map(String::from),
            client_id: req.client_id.clone(),
            symbol: req.symbol.clone(),
            side: req.side,
            qty: req.qty,
            order_type: req.order_type,
            price: req.price,
            state: OrderState::New,
            filled_qty: Decimal::ZERO,
            avg_fill_price: None,
            reason: None,
            rule: None,
            created_at: now,
            updated_at: now,
            rested: false,
        };
        let quote = inner.quotes.get(&req.symbol).copied();
        let a = account_mut(&mut inner.accounts, account)?;
        match pre_trade(a, &order, &inst, quote, now) {
            Ok(()) => order.state = OrderState::Accepted,
            Err(r) => {
                order.state = OrderState::Rejected;
                order.reason = Some(r.detail.clone());
                order.rule = Some(r.rule.to_string());
            }
        }
        a.by_client
            .insert((src.clone(), order.client_id.clone()), order.id.clone());
        if order.state == OrderState::Rejected {
            self.kv
                .write(vec![put(order_key(&order), json(&order))])
                .await?;
            tracing::info!(account, order = %order.id, rule = ?order.rule, reason = ?order.reason, "order rejected");
            // Manual orders are audited by the API; a strategy's here.
            if let Some(strategy) = strategy {
                let entry = qb_core::model::NewAuditEntry {
                    actor: format!("strategy:{strategy}"),
                    action: "trading.risk_reject".into(),
                    target: Some(order.id.clone()),
                    result: "rejected".into(),
                    status: None,
                    client_ip: None,
                    detail: Some(format!(
                        "account={account} client_id={} rule={} {}",
                        order.client_id,
                        order.rule.as_deref().unwrap_or_default(),
                        order.reason.as_deref().unwrap_or_default()
                    )),
                };
                if let Err(e) = self.meta.append_audit(entry).await {
                    tracing::error!(error = %e, "could not audit a risk rejection");
                }
            }
            self.pubsub.publish(
                ORDERS_TOPIC,
                serde_json::to_value(&order).unwrap_or_default(),
            );
            return Ok(Placed::new(order));
        }
        a.recent.entry(src.clone()).or_default().push_back(now);
        a.recent.entry(String::new()).or_default().push_back(now);
        a.open.insert(order.id.clone(), order.clone());
        if let Err(e) = inner.broker.place(&order, inst.price_tick) {
            let a = account_mut(&mut inner.accounts, account)?;
            a.open.remove(&order.id);
            order.state = OrderState::Rejected;
            order.reason = Some(format!("broker: {e}"));
            order.rule = Some("broker".into());
            self.kv
                .write(vec![put(order_key(&order), json(&order))])
                .await?;
            return Ok(Placed::new(order));
        }
        let mut writes = Vec::new();
        let mut events = vec![(
            ORDERS_TOPIC,
            serde_json::to_value(&order).unwrap_or_default(),
        )];
        let updated = self.book_executions(inner, &mut writes, &mut events)?;
        if let Some(o) = account_mut(&mut inner.accounts, account)?
            .open
            .get_mut(&order.id)
        {
            // Tried on the current quote when placed: from now on it rests.
            o.rested = quote.is_some();
            order = o.clone();
        }
        writes.insert(0, put(order_key(&order), json(&order)));
        self.kv.write(writes).await?;
        for (topic, e) in events {
            self.pubsub.publish(topic, e);
        }
        Ok(Placed::new(
            updated
                .into_iter()
                .rfind(|o| o.id == order.id)
                .unwrap_or(order),
        ))
    }

    /// Books what the broker executed: fills, ledgers, order states. Adds
    /// the writes and events to send once the batch is committed.
    fn book_executions(
        &self,
        inner: &mut Inner,
        writes: &mut Vec<KvWrite>,
        events: &mut Vec<(&'static str, serde_json::Value)>,
    ) -> Result<Vec<Order>, LiveError> {
        let executions = inner.broker.take_executions();
        let mut updated = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        for Execution {
            order_id,
            qty,
            price,
            ts,
        } in executions
        {
            let Some((name, a)) = inner
                .accounts
                .iter_mut()
                .find(|(_, a)| a.open.contains_key(&order_id))
            else {
                tracing::warn!(order = %order_id, "execution of an unknown order ignored");
                continue;
            };
            let mut o = a.open.remove(&order_id).expect("present");
            let signed = qty * o.side.sign();
            let booked = a
                .ledger
                .apply(ts, &o.symbol, &o.client_id, signed, price)
                .map_err(|e| LiveError::Conflict(e.to_string()))?;
            let sub_name = source(o.strategy.as_deref());
            a.sub(&sub_name, &inner.instruments)
                .apply(ts, &o.symbol, &o.client_id, signed, price)
                .map_err(|e| LiveError::Conflict(e.to_string()))?;
            let prev = o.filled_qty;
            o.filled_qty += qty;
            let avg = o.avg_fill_price.unwrap_or_default();
            o.avg_fill_price = Some((avg * prev + price * qty) / o.filled_qty);
            o.state = if o.filled_qty >= o.qty {
                OrderState::Filled
            } else {
                OrderState::PartiallyFilled
            };
            o.updated_at = now_ms();
            let fill = Fill {
                seq: a.doc.next_fill_seq,
                order_id: o.id.clone(),
                account: name.clone(),
                strategy: o.strategy.clone(),
                client_id: o.client_id.clone(),
                symbol: o.symbol.clone(),
                side: o.side,
                qty,
                price,
                commission: booked.commission,
                realized: booked.realized,
                ts,
            };
            a.doc.next_fill_seq += 1;
            writes.push(put(format!("fill/{name}/{:020}", fill.seq), json(&fill)));
            writes.push(put(order_key(&o), json(&o)));
            events.push((FILLS_TOPIC, serde_json::to_value(&fill).unwrap_or_default()));
            events.push((ORDERS_TOPIC, serde_json::to_value(&o).unwrap_or_default()));
            updated.push(o.clone());
            if o.state.is_open() {
                a.open.insert(o.id.clone(), o);
            }
            if !touched.contains(name) {
                touched.push(name.clone());
            }
        }
        for name in touched {
            if let Some(a) = inner.accounts.get_mut(&name) {
                writes.push(put(format!("acct/{name}"), a.doc()));
                events.push((
                    POSITIONS_TOPIC,
                    serde_json::json!({"account": name, "positions": a.ledger.positions}),
                ));
            }
        }
        Ok(updated)
    }

    /// Cancels an open order (by server id or client id).
    pub async fn cancel(&self, account: &str, id: &str, reason: &str) -> Result<Order, LiveError> {
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        let a = account_mut(&mut inner.accounts, account)?;
        let key = if a.open.contains_key(id) {
            id.to_string()
        } else if let Some(o) = a.open.values().find(|o| o.client_id == id) {
            o.id.clone()
        } else {
            return Err(LiveError::Conflict(format!(
                "order {id} is not open in account {account}"
            )));
        };
        let mut o = a.open.remove(&key).expect("present");
        let _ = inner.broker.cancel(&key);
        o.state = OrderState::Cancelled;
        o.reason = Some(reason.into());
        o.updated_at = now_ms();
        self.kv.write(vec![put(order_key(&o), json(&o))]).await?;
        self.pubsub
            .publish(ORDERS_TOPIC, serde_json::to_value(&o).unwrap_or_default());
        Ok(o)
    }

    /// A trade or quote arrived: marks the books, lets the broker match,
    /// books what it executed.
    pub async fn on_tick(
        &self,
        symbol: &str,
        ts: i64,
        price: f64,
        bid: Option<f64>,
        ask: Option<f64>,
    ) -> Result<(), LiveError> {
        let Some(last) = qb_trading::dec(price) else {
            return Ok(());
        };
        let q = Quote {
            ts,
            last,
            bid: bid.and_then(qb_trading::dec).unwrap_or(last),
            ask: ask.and_then(qb_trading::dec).unwrap_or(last),
        };
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        inner.quotes.insert(symbol.into(), q);
        let day = day_of(ts);
        for a in inner.accounts.values_mut() {
            a.ledger.mark(symbol, last);
            for l in a.subs.values_mut() {
                l.mark(symbol, last);
            }
            if a.doc.day != day {
                a.doc.day = day.clone();
                a.doc.day_start_equity = a.ledger.equity();
                a.doc.strategy_day_start = a
                    .subs
                    .iter()
                    .map(|(k, l)| (k.clone(), l.equity()))
                    .collect();
            }
        }
        inner.broker.on_quote(symbol, &q);
        let mut writes = Vec::new();
        let mut events = Vec::new();
        self.book_executions(inner, &mut writes, &mut events)?;
        if !writes.is_empty() {
            self.kv.write(writes).await?;
            for (topic, e) in events {
                self.pubsub.publish(topic, e);
            }
        }
        Ok(())
    }

    /// The kill switch: cancels every open order of `account` and moves it
    /// to HALTED (only cancels pass until an admin resumes it); persisted,
    /// so HALTED survives a restart. Returns the cancelled orders.
    pub async fn kill(&self, account: &str, reason: &str) -> Result<Vec<Order>, LiveError> {
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        let a = account_mut(&mut inner.accounts, account)?;
        a.doc.halted = true;
        a.doc.halted_reason = Some(reason.into());
        let now = now_ms();
        let mut cancelled = Vec::new();
        let mut writes = Vec::new();
        for (id, mut o) in std::mem::take(&mut a.open) {
            let _ = inner.broker.cancel(&id);
            o.state = OrderState::Cancelled;
            o.reason = Some(format!("kill switch: {reason}"));
            o.updated_at = now;
            writes.push(put(order_key(&o), json(&o)));
            cancelled.push(o);
        }
        let a = account_mut(&mut inner.accounts, account)?;
        writes.push(put(format!("acct/{account}"), a.doc()));
        self.kv.write(writes).await?;
        for o in &cancelled {
            self.pubsub
                .publish(ORDERS_TOPIC, serde_json::to_value(o).unwrap_or_default());
        }
        tracing::warn!(
            account,
            reason,
            cancelled = cancelled.len(),
            "kill switch: account halted"
        );
        Ok(cancelled)
    }

    /// Lifts HALTED.
    pub async fn resume(&self, account: &str) -> Result<(), LiveError> {
        let mut inner = self.inner.lock().await;
        let a = account_mut(&mut inner.accounts, account)?;
        a.doc.halted = false;
        a.doc.halted_reason = None;
        let doc = a.doc();
        self.kv
            .write(vec![put(format!("acct/{account}"), doc)])
            .await?;
        Ok(())
    }

    pub async fn account(&self, account: &str) -> Result<AccountView, LiveError> {
        let mut inner = self.inner.lock().await;
        Ok(account_mut(&mut inner.accounts, account)?.view())
    }

    pub async fn accounts(&self) -> Vec<AccountView> {
        let inner = self.inner.lock().await;
        inner.accounts.values().map(Account::view).collect()
    }

    pub async fn is_halted(&self, account: &str) -> bool {
        let inner = self.inner.lock().await;
        inner.accounts.get(account).is_some_and(|a| a.doc.halted)
    }

    /// Open orders, oldest first.
    pub async fn open_orders(&self, account: &str) -> Result<Vec<Order>, LiveError> {
        let mut inner = self.inner.lock().await;
        Ok(account_mut(&mut inner.accounts, account)?
            .open
            .values()
            .cloned()
            .collect())
    }

    /// Every order of the account, oldest first (from the store).
    pub async fn all_orders(&self, account: &str) -> Result<Vec<Order>, LiveError> {
        self.account(account).await?;
        Ok(self
            .kv
            .scan(NS, &format!("order/{account}/"))
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// A strategy's position in `symbol`: (quantity, average price).
    pub async fn strategy_position(
        &self,
        account: &str,
        strategy: &str,
        symbol: &str,
    ) -> Result<(Decimal, Decimal), LiveError> {
        let mut inner = self.inner.lock().await;
        let a = account_mut(&mut inner.accounts, account)?;
        Ok(a.subs
            .get(strategy)
            .and_then(|l| l.positions.get(symbol))
            .map_or((Decimal::ZERO, Decimal::ZERO), |p| (p.qty, p.avg_price)))
    }

    /// The latest quote of every symbol the desk has seen.
    pub async fn quotes(&self) -> BTreeMap<String, QuoteView> {
        let inner = self.inner.lock().await;
        inner
            .quotes
            .iter()
            .map(|(s, q)| {
                (
                    s.clone(),
                    QuoteView {
                        ts: q.ts,
                        last: q.last,
                        bid: q.bid,
                        ask: q.ask,
                    },
                )
            })
            .collect()
    }

    /// Deletes final orders last changed before `before_ms` (Unix ms), with
    /// their fills, and forgets their client ids; open orders, books and
    /// positions are untouched. Final orders never change again, so the
    /// store is scanned without holding the desk; only the delete batch and
    /// the client-id index update take its lock. Returns (orders, fills)
    /// deleted.
    pub async fn prune(&self, before_ms: i64) -> Result<(usize, usize), LiveError> {
        let mut writes = Vec::new();
        let mut gone = Vec::new();
        for (key, value) in self.kv.scan(NS, "order/").await? {
            let Ok(o) = serde_json::from_slice::<Order>(&value) else {
                continue;
            };
            if !o.state.is_open() && o.updated_at < before_ms {
                writes.push(delete(key));
                gone.push(o);
            }
        }
        if gone.is_empty() {
            return Ok((0, 0));
        }
        let ids: std::collections::HashSet<&str> = gone.iter().map(|o| o.id.as_str()).collect();
        for (key, value) in self.kv.scan(NS, "fill/").await? {
            if serde_json::from_slice::<Fill>(&value)
                .is_ok_and(|f| ids.contains(f.order_id.as_str()))
            {
                writes.push(delete(key));
            }
        }
        let fills = writes.len() - gone.len();
        let mut inner = self.inner.lock().await;
        self.kv.write(writes).await?;
        for o in &gone {
            if let Some(a) = inner.accounts.get_mut(&o.account) {
                a.by_client
                    .remove(&(source(o.strategy.as_deref()), o.client_id.clone()));
            }
        }
        Ok((gone.len(), fills))
    }

    pub async fn order(&self, account: &str, id: &str) -> Result<Order, LiveError> {
        let v = self
            .kv
            .get(NS, &format!("order/{account}/{id}"))
            .await?
            .ok_or_else(|| {
                LiveError::NotFound(format!("order {id} not found in account {account}"))
            })?;
        serde_json::from_slice(&v).map_err(|e| LiveError::Conflict(e.to_string()))
    }

    /// Fills, oldest first.
    pub async fn fills(&self, account: &str) -> Result<Vec<Fill>, LiveError> {
        self.account(account).await?;
        Ok(self
            .kv
            .scan(NS, &format!("fill/{account}/"))
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }

    /// Net positions of the account, then each strategy's.
    pub async fn positions(&self, account: &str) -> Result<Vec<PositionView>, LiveError> {
        let mut inner = self.inner.lock().await;
        let a = account_mut(&mut inner.accounts, account)?;
        let view = |strategy: Option<&str>, l: &Ledger| {
            l.positions
                .iter()
                .map(|(s, p)| PositionView {
                    account: account.into(),
                    strategy: strategy.map(String::from),
                    symbol: s.clone(),
                    qty: p.qty,
                    avg_price: p.avg_price,
                    mark: p.mark,
                    realized: p.realized,
                    fees: p.fees,
                })
                .collect::<Vec<_>>()
        };
        let mut out = view(None, &a.ledger);
        for (name, l) in &a.subs {
            out.extend(view(Some(name), l));
        }
        Ok(out)
    }
}

fn account_mut<'a>(
    accounts: &'a mut BTreeMap<String, Account>,
    name: &str,
) -> Result<&'a mut Account, LiveError> {
    accounts
        .get_mut(name)
        .ok_or_else(|| LiveError::NotFound(format!("account {name} not found")))
}

/// Every check an order passes before it goes to the broker.
fn pre_trade(
    a: &mut Account,
    o: &Order,
    inst: &Instrument,
    quote: Option<Quote>,
    now: i64,
) -> Result<(), Rejection> {
    if a.doc.halted {
        return Err(Rejection::new(
            "halted",
            format!(
                "account {} is HALTED ({}); only cancels are accepted",
                a.doc.name,
                a.doc.halted_reason.as_deref().unwrap_or("kill switch")
            ),
        ));
    }
    if !(o.qty / inst.lot_size).fract().is_zero() {
        return Err(Rejection::new(
            "lot_size",
            format!(
                "quantity {} is not a multiple of the lot size {}",
                o.qty, inst.lot_size
            ),
        ));
    }
    let buy = o.side == Side::Buy;
    let price = match (o.price, quote) {
        (Some(p), _) => p,
        (None, Some(q)) => {
            if buy {
                q.ask
            } else {
                q.bid
            }
        }
        (None, None) => {
            return Err(Rejection::new(
                "no_quote",
                format!("no quote for {} yet: a market order needs one", o.symbol),
            ));
        }
    };
    // Self-trade prevention: no order may cross a resting order of another
    // source of the same account.
    let src = source(o.strategy.as_deref());
    if o.order_type != OrderType::Stop {
        let crosses = a.open.values().find(|r| {
            r.symbol == o.symbol
                && r.side != o.side
                && r.order_type == OrderType::Limit
                && source(r.strategy.as_deref()) != src
                && r.price.is_some_and(|rp| {
                    o.order_type == OrderType::Market || if buy { rp <= price } else { rp >= price }
                })
        });
        if let Some(r) = crosses {
            return Err(Rejection::new(
                "self_trade",
                format!(
                    "would trade against order {} ({} {} {} at {}) of {} in the same account",
                    r.id,
                    if r.side == Side::Buy { "buy" } else { "sell" },
                    r.qty,
                    r.symbol,
                    r.price.unwrap_or_default(),
                    source(r.strategy.as_deref())
                ),
            ));
        }
    }
    let signed = o.qty * o.side.sign();
    let last = quote.map_or(price, |q| q.last);
    let account_scope = (
        "account".to_string(),
        Some(a.doc.limits.clone()),
        None::<&str>,
    );
    let strategy_scope = (
        format!("strategy {src}"),
        o.strategy
            .as_ref()
            .and_then(|s| a.doc.strategy_limits.get(s).cloned()),
        Some(src.as_str()),
    );
    for (scope, limits, only) in [account_scope, strategy_scope] {
        let Some(limits) = limits else { continue };
        let mine = |r: &&Order| only.is_none_or(|s| source(r.strategy.as_deref()) == s);
        let open_same_side: Decimal = a
            .open
            .values()
            .filter(mine)
            .filter(|r| r.symbol == o.symbol && r.side == o.side)
            .map(|r| r.qty - r.filled_qty)
            .sum();
        let open_orders = a.open.values().filter(mine).count() as u32;
        let (position, day_pnl) = match only {
            None => (
                a.ledger.position(&o.symbol),
                a.ledger.equity() - a.doc.day_start_equity,
            ),
            Some(s) => a.subs.get(s).map_or((Decimal::ZERO, Decimal::ZERO), |l| {
                let start = a.doc.strategy_day_start.get(s).copied().unwrap_or_default();
                (l.position(&o.symbol), l.equity() - start)
            }),
        };
        let recent = a
            .recent
            .entry(only.unwrap_or_default().to_string())
            .or_default();
        while recent.front().is_some_and(|&t| t <= now - 1000) {
            recent.pop_front();
        }
        limits.check(
            &scope,
            &Exposure {
                qty: o.qty,
                signed,
                price,
                is_priced: o.price.is_some(),
                last,
                multiplier: inst.multiplier,
                position,
                open_same_side,
                open_orders,
                recent_orders: recent.len() as u32,
                day_pnl,
            },
        )?;
    }
    let held = a.ledger.position(&o.symbol);
    if (held + signed).abs() > held.abs() {
        a.ledger.mark(&o.symbol, last);
        a.ledger
            .check_margin(now * 1_000_000, &o.symbol, held + signed, signed, price)
            .map_err(|e| Rejection::new("margin", e))?;
    }
    Ok(())
}
