//! The replay loop: bars (bar mode) or ticks with quotes (tick mode) of
//! one or more symbols, merged in time, fed to a strategy in batches;
//! orders matched by [`crate::execution`] and booked by [`crate::ledger`].
//!
//! A run proceeds in windows of `batch` distinct timestamps:
//! 1. each symbol's rows in the window go to the strategy in one call
//!    (`on-bars` or `on-ticks`, symbols in name order), with `now` = the
//!    batch's last row time;
//! 2. the window's rows are then replayed in time order: pending orders of
//!    a symbol decided before a row are tried on it (stops first, then in
//!    submission order), fills are booked, the symbol is marked (bar
//!    close, tick trade price), and equity is recorded once per timestamp;
//! 3. order events (filled, cancelled) go to the strategy, oldest first.
//!
//! Inside a call the strategy's view of its positions includes the market
//! orders it submitted (they are certain to fill on the next row); limit
//! and stop fills become visible with the next call. Margin is checked
//! when an order is submitted, at the last mark at or before the order's
//! decision time; a refused order returns the reason at once.
//!
//! The strategy is anything that implements [`Runner`]: a sandboxed plugin
//! instance ([`run`]), or the same strategy compiled natively
//! ([`run_with`], for benchmarks and differential tests).

use std::collections::{BTreeMap, BTreeSet};

use qb_core::market::Instrument;
use qb_plugin_host::{
    Account, Bars, Env, Order, OrderEvent, OrderState, OrderType, Param, Plugin, PluginError,
    Position, Runner, Side, Ticks,
};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::dec;
use crate::execution::{BarPx, Kind, Px, QuotePx, Slippage, fill_price, priority};
use crate::ledger::{Fill, Ledger, LedgerError};

/// Bars of one symbol, oldest first, columnar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolBars {
    pub symbol: String,
    pub ts: Vec<i64>,
    pub open: Vec<f64>,
    pub high: Vec<f64>,
    pub low: Vec<f64>,
    pub close: Vec<f64>,
    pub volume: Vec<f64>,
}

/// Ticks of one symbol with the best quote at each, oldest first,
/// columnar; `bid`/`ask` NaN where the source had no quote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolTicks {
    pub symbol: String,
    pub ts: Vec<i64>,
    pub price: Vec<f64>,
    pub size: Vec<f64>,
    pub bid: Vec<f64>,
    pub ask: Vec<f64>,
}

/// What a run replays.
#[derive(Debug, Clone, Copy)]
pub enum Feed<'a> {
    Bars(&'a [SymbolBars]),
    Ticks(&'a [SymbolTicks]),
}

/// One symbol's rows as the replay loop sees them.
trait Series {
    fn symbol(&self) -> &str;
    fn ts(&self) -> &[i64];
    /// Columns of equal length, times in order.
    fn check(&self) -> Result<(), String>;
    /// The price the symbol is marked at after row `i`.
    fn mark(&self, i: usize) -> f64;
    /// What pending orders are tried against at row `i`.
    fn px(&self, i: usize, rested: bool) -> Result<Px, String>;
    /// Hands rows `from..to` to the strategy.
    fn deliver<R: Runner>(&self, r: &mut R, from: usize, to: usize) -> Result<(), PluginError>;
}

/// Every column as long as `ts`; times increasing (`strict`, bars) or
/// not decreasing (ticks may share a timestamp).
fn check_columns(symbol: &str, ts: &[i64], lens: &[usize], strict: bool) -> Result<(), String> {
    if lens.iter().any(|&l| l != ts.len()) {
        return Err(format!("{symbol}: columns of different lengths"));
    }
    let out_of_order = |w: &[i64]| if strict { w[0] >= w[1] } else { w[0] > w[1] };
    if ts.windows(2).any(out_of_order) {
        let rule = if strict {
            "must increase"
        } else {
            "must not decrease"
        };
        return Err(format!("{symbol}: times {rule}"));
    }
    Ok(())
}

fn decimal(symbol: &str, ts: i64, what: &str, v: f64) -> Result<Decimal, String> {
    dec(v).ok_or_else(|| format!("{symbol}: {what} {v} at {ts} is not a finite number"))
}

impl Series for SymbolBars {
    fn symbol(&self) -> &str {
        &self.symbol
    }
    fn ts(&self) -> &[i64] {
        &self.ts
    }
    fn check(&self) -> Result<(), String> {
        let lens = [
            self.open.len(),
            self.high.len(),
            self.low.len(),
            self.close.len(),
            self.volume.len(),
        ];
        check_columns(&self.symbol, &self.ts, &lens, true)
    }
    fn mark(&self, i: usize) -> f64 {
        self.close[i]
    }
    fn px(&self, i: usize, _rested: bool) -> Result<Px, String> {
        let (s, t) = (&self.symbol, self.ts[i]);
        Ok(Px::Bar(BarPx {
            open: decimal(s, t, "open", self.open[i])?,
            high: decimal(s, t, "high", self.high[i])?,
            low: decimal(s, t, "low", self.low[i])?,
        }))
    }
    fn deliver<R: Runner>(&self, r: &mut R, from: usize, to: usize) -> Result<(), PluginError> {
        let bars = Bars {
            symbol: self.symbol.clone(),
            ts: self.ts[from..to].to_vec(),
            open: self.open[from..to].to_vec(),
            high: self.high[from..to].to_vec(),
            low: self.low[from..to].to_vec(),
            close: self.close[from..to].to_vec(),
            volume: self.volume[from..to].to_vec(),
        };
        r.on_bars(self.ts[to - 1], &bars)
    }
}

impl Series for SymbolTicks {
    fn symbol(&self) -> &str {
        &self.symbol
    }
    fn ts(&self) -> &[i64] {
        &self.ts
    }
    fn check(&self) -> Result<(), String> {
        let lens = [
            self.price.len(),
            self.size.len(),
            self.bid.len(),
            self.ask.len(),
        ];
        check_columns(&self.symbol, &self.ts, &lens, false)
    }
    fn mark(&self, i: usize) -> f64 {
        self.price[i]
    }
    fn px(&self, i: usize, rested: bool) -> Result<Px, String> {
        let (s, t) = (&self.symbol, self.ts[i]);
        let or_trade = |v: f64| if v.is_nan() { self.price[i] } else { v };
        Ok(Px::Quote {
            quote: QuotePx {
                bid: decimal(s, t, "bid", or_trade(self.bid[i]))?,
                ask: decimal(s, t, "ask", or_trade(self.ask[i]))?,
            },
            rested,
        })
    }
    fn deliver<R: Runner>(&self, r: &mut R, from: usize, to: usize) -> Result<(), PluginError> {
        let ticks = Ticks {
            symbol: self.symbol.clone(),
            ts: self.ts[from..to].to_vec(),
            price: self.price[from..to].to_vec(),
            size: self.size[from..to].to_vec(),
            bid: self.bid[from..to].to_vec(),
            ask: self.ask[from..to].to_vec(),
        };
        r.on_ticks(self.ts[to - 1], &ticks)
    }
}

/// What a run is configured with (all of it goes into the result hash).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub initial_cash: Decimal,
    pub slippage: Slippage,
    /// Distinct timestamps per strategy call.
    pub batch: usize,
    /// Seed of the strategy's `random-u64`.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            initial_cash: Decimal::from(1_000_000),
            slippage: Slippage::None,
            batch: 1024,
            seed: 0,
        }
    }
}

/// An order the strategy submitted that is not filled yet.
#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    client_id: String,
    symbol: String,
    /// Signed.
    qty: Decimal,
    kind: Kind,
    decided: i64,
    /// Tried on a quote already without filling.
    rested: bool,
}

/// A refused order, kept with the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejection {
    pub ts: i64,
    pub client_id: String,
    pub reason: String,
}

/// The simulated exchange and account a strategy acts on.
pub struct SimEnv {
    ledger: Ledger,
    pending: Vec<Pending>,
    /// Ledger position plus pending market orders, per symbol.
    expected: BTreeMap<String, Decimal>,
    seen_ids: BTreeSet<String>,
    next_seq: u64,
    /// Marks by symbol (the whole series), to mark at decision time.
    marks: BTreeMap<String, (Vec<i64>, Vec<f64>)>,
    /// The latest bar time delivered so far: orders cannot be decided later.
    horizon: i64,
    state: BTreeMap<String, Vec<u8>>,
    events: Vec<(i64, OrderEvent)>,
    rejections: Vec<Rejection>,
}

impl SimEnv {
    fn mark_at(&self, symbol: &str, ts: i64) -> Option<f64> {
        let (times, marks) = self.marks.get(symbol)?;
        let i = times.partition_point(|&t| t <= ts);
        (i > 0).then(|| marks[i - 1])
    }

    fn reject(&mut self, ts: i64, client_id: &str, reason: String) -> Result<(), String> {
        self.rejections.push(Rejection {
            ts,
            client_id: client_id.into(),
            reason: reason.clone(),
        });
        Err(reason)
    }
}

impl Env for SimEnv {
    fn submit_order(&mut self, order: Order) -> Result<(), String> {
        if !self.seen_ids.insert(order.client_id.clone()) {
            return Ok(()); // the same id twice is one order
        }
        let ts = order.ts;
        let id = order.client_id.clone();
        let Some(inst) = self.ledger.instrument(&order.symbol).cloned() else {
            return self.reject(
                ts,
                &id,
                format!("{} is not a symbol of this run", order.symbol),
            );
        };
        if ts > self.horizon {
            return self.reject(
                ts,
                &id,
                format!(
                    "decision time {ts} is after the latest row delivered ({})",
                    self.horizon
                ),
            );
        }
        let Some(qty) = dec(order.quantity).filter(|q| *q > Decimal::ZERO) else {
            return self.reject(
                ts,
                &id,
                format!("quantity {} must be a positive number", order.quantity),
            );
        };
        if !(qty / inst.lot_size).fract().is_zero() {
            return self.reject(
                ts,
                &id,
                format!(
                    "quantity {qty} is not a multiple of the lot size {}",
                    inst.lot_size
                ),
            );
        }
        let kind = match order.type_ {
            OrderType::Market => Kind::Market,
            OrderType::Limit(p) | OrderType::Stop(p)
                if dec(p).is_none_or(|p| p <= Decimal::ZERO) =>
            {
                return self.reject(ts, &id, format!("price {p} must be a positive number"));
            }
            OrderType::Limit(p) => Kind::Limit(dec(p).unwrap_or_default()),
            OrderType::Stop(p) => Kind::Stop(dec(p).unwrap_or_default()),
        };
        let Some(mark) = self.mark_at(&order.symbol, ts).and_then(dec) else {
            return self.reject(
                ts,
                &id,
                format!("no price for {} at or before {ts}", order.symbol),
            );
        };
        let signed = if order.side == Side::Buy { qty } else { -qty };
        let held = self
            .expected
            .get(&order.symbol)
            .copied()
            .unwrap_or_default();
        // Only the part that adds exposure needs margin; the symbol is
        // marked at its decision-time price first.
        self.ledger.mark(&order.symbol, mark);
        if (held + signed).abs() > held.abs()
            && let Err(reason) =
                self.ledger
                    .check_margin(ts, &order.symbol, held + signed, signed, mark)
        {
            return self.reject(ts, &id, reason);
        }
        if kind == Kind::Market {
            self.expected.insert(order.symbol.clone(), held + signed);
        }
        self.next_seq += 1;
        self.pending.push(Pending {
            seq: self.next_seq,
            client_id: id,
            symbol: order.symbol,
            qty: signed,
            kind,
            decided: ts,
            rested: false,
        });
        Ok(())
    }

    fn cancel_order(&mut self, client_id: &str) -> Result<(), String> {
        let Some(i) = self.pending.iter().position(|p| p.client_id == client_id) else {
            return Err(format!("no open order {client_id:?}"));
        };
        let p = self.pending.remove(i);
        if p.kind == Kind::Market {
            *self.expected.entry(p.symbol.clone()).or_default() -= p.qty;
        }
        self.events.push((
            p.decided,
            event(
                &p,
                OrderState::Cancelled,
                Decimal::ZERO,
                Decimal::ZERO,
                "cancelled by the strategy",
            ),
        ));
        Ok(())
    }

    fn position(&mut self, symbol: &str) -> Position {
        let avg = self
            .ledger
            .positions
            .get(symbol)
            .map_or(Decimal::ZERO, |p| p.avg_price);
        Position {
            symbol: symbol.into(),
            quantity: self
                .expected
                .get(symbol)
                .copied()
                .unwrap_or_default()
                .to_f64()
                .unwrap_or(0.0),
            average_price: avg.to_f64().unwrap_or(0.0),
        }
    }

    fn account(&mut self) -> Account {
        Account {
            cash: self.ledger.cash.to_f64().unwrap_or(0.0),
            equity: self.ledger.equity().to_f64().unwrap_or(0.0),
            margin_used: self.ledger.margin(None).to_f64().unwrap_or(0.0),
        }
    }

    fn state_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).cloned()
    }

    fn state_set(&mut self, key: &str, value: Vec<u8>) {
        self.state.insert(key.into(), value);
    }
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

fn event(p: &Pending, state: OrderState, qty: Decimal, price: Decimal, reason: &str) -> OrderEvent {
    OrderEvent {
        client_id: p.client_id.clone(),
        symbol: p.symbol.clone(),
        state,
        fill_quantity: qty.abs().to_f64().unwrap_or(0.0),
        fill_price: price.to_f64().unwrap_or(0.0),
        reason: reason.into(),
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunResult {
    pub fills: Vec<Fill>,
    /// Equity after each timestamp (f64: a derived figure for analytics,
    /// from an f64 shadow of the ledger; `final_equity` is exact).
    pub equity: Vec<(i64, f64)>,
    pub rejections: Vec<Rejection>,
    pub final_cash: Decimal,
    pub final_equity: Decimal,
    /// Rows replayed: bars, or ticks in tick mode.
    pub rows: u64,
    pub log_lines_dropped: u64,
}

impl RunResult {
    /// Lowercase hex sha256 of the canonical JSON of the whole result:
    /// equal hashes mean byte-identical runs.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(json))
    }
}

/// Replays `feed` into a fresh sandboxed instance of `plugin`. `progress`
/// gets the fraction done after each window and returns false to cancel.
pub fn run(
    plugin: &Plugin,
    params: &[Param],
    feed: Feed<'_>,
    instruments: Vec<Instrument>,
    settings: &Settings,
    progress: impl FnMut(f64) -> bool,
) -> Result<RunResult, RunError> {
    run_with(
        |env| plugin.instantiate(env, settings.seed),
        params,
        feed,
        instruments,
        settings,
        progress,
    )
}

/// [`run`] with any strategy runner `start` makes from the simulated
/// environment.
pub fn run_with<R: Runner<Env = SimEnv>>(
    start: impl FnOnce(SimEnv) -> Result<R, PluginError>,
    params: &[Param],
    feed: Feed<'_>,
    instruments: Vec<Instrument>,
    settings: &Settings,
    progress: impl FnMut(f64) -> bool,
) -> Result<RunResult, RunError> {
    match feed {
        Feed::Bars(d) => replay(start, params, d, instruments, settings, progress),
        Feed::Ticks(d) => replay(start, params, d, instruments, settings, progress),
    }
}

fn replay<S: Series, R: Runner<Env = SimEnv>>(
    start: impl FnOnce(SimEnv) -> Result<R, PluginError>,
    params: &[Param],
    data: &[S],
    instruments: Vec<Instrument>,
    settings: &Settings,
    mut progress: impl FnMut(f64) -> bool,
) -> Result<RunResult, RunError> {
    if settings.batch == 0 {
        return Err(RunError::Invalid("batch must be at least 1".into()));
    }
    let mut data: Vec<&S> = data.iter().collect();
    data.sort_by(|a, b| a.symbol().cmp(b.symbol()));
    for d in &data {
        d.check().map_err(RunError::Invalid)?;
        if !instruments.iter().any(|i| i.symbol == d.symbol()) {
            return Err(RunError::Invalid(format!("{}: no instrument", d.symbol())));
        }
    }
    let env = SimEnv {
        ledger: Ledger::new(settings.initial_cash, instruments),
        pending: Vec::new(),
        expected: BTreeMap::new(),
        seen_ids: BTreeSet::new(),
        next_seq: 0,
        marks: data
            .iter()
            .map(|d| {
                let marks = (0..d.ts().len()).map(|i| d.mark(i)).collect();
                (d.symbol().to_string(), (d.ts().to_vec(), marks))
            })
            .collect(),
        horizon: i64::MIN,
        state: BTreeMap::new(),
        events: Vec::new(),
        rejections: Vec::new(),
    };
    let mut inst = start(env)?;
    let first = data
        .iter()
        .filter_map(|d| d.ts().first())
        .min()
        .copied()
        .unwrap_or(0);
    inst.init(first, params, None)?;

    // The merged timeline of distinct timestamps.
    let mut timeline: Vec<i64> = data.iter().flat_map(|d| d.ts().iter().copied()).collect();
    timeline.sort_unstable();
    timeline.dedup();
    let mut cursor = vec![0usize; data.len()];
    let mut fills = Vec::new();
    let mut equity = Vec::with_capacity(timeline.len());
    let mut last_mark: Vec<Option<f64>> = vec![None; data.len()];
    let total_rows: u64 = data.iter().map(|d| d.ts().len() as u64).sum();
    // Per symbol: (quantity, average price) as f64, and the multiplier.
    let mut shadow = vec![(0.0f64, 0.0f64); data.len()];
    let mult: Vec<f64> = data
        .iter()
        .map(|d| {
            inst.env()
                .ledger
                .instrument(d.symbol())
                .map_or(1.0, |i| f(i.multiplier))
        })
        .collect();
    let mut cash = f(settings.initial_cash);

    // Per symbol: the earliest decision time of its pending orders
    // (i64::MAX if none), so a row with nothing due costs one comparison.
    let mut due_after = vec![i64::MAX; data.len()];
    for window in timeline.chunks(settings.batch) {
        let end = *window.last().unwrap_or(&0);
        // 1. The strategy sees each symbol's rows of the window.
        let mut ranges = Vec::with_capacity(data.len());
        for (k, d) in data.iter().enumerate() {
            let from = cursor[k];
            let to = from + d.ts()[from..].partition_point(|&t| t <= end);
            ranges.push((from, to));
            if from == to {
                continue;
            }
            inst.env_mut().horizon = d.ts()[to - 1].max(inst.env().horizon);
            d.deliver(&mut inst, from, to)?;
        }
        // 2. Replay the window: fills, then equity from an f64 shadow of
        //    the ledger (refreshed at fills) and the latest marks.
        for (k, d) in data.iter().enumerate() {
            due_after[k] = earliest_decision(&inst.env().pending, d.symbol());
        }
        for &ts in window {
            for (k, d) in data.iter().enumerate() {
                while cursor[k] < ranges[k].1 && d.ts()[cursor[k]] == ts {
                    let i = cursor[k];
                    cursor[k] += 1;
                    last_mark[k] = Some(d.mark(i));
                    if due_after[k] >= ts {
                        continue;
                    }
                    let env = inst.env_mut();
                    let before = fills.len();
                    fill_symbol(env, *d, i, settings.slippage, &mut fills)?;
                    due_after[k] = earliest_decision(&env.pending, d.symbol());
                    if fills.len() > before {
                        let p = env
                            .ledger
                            .positions
                            .get(d.symbol())
                            .cloned()
                            .unwrap_or_default();
                        shadow[k] = (f(p.qty), f(p.avg_price));
                        cash = f(env.ledger.cash);
                    }
                }
            }
            let open: f64 = (0..data.len())
                .filter(|&k| shadow[k].0 != 0.0)
                .map(|k| {
                    (last_mark[k].unwrap_or(shadow[k].1) - shadow[k].1) * shadow[k].0 * mult[k]
                })
                .sum();
            equity.push((ts, cash + open));
        }
        // The ledger's own marks (for margin checks and `get-account`),
        // once per window.
        mark_ledger(inst.env_mut(), &data, &last_mark);
        // 3. Order events, oldest first.
        let mut events = std::mem::take(&mut inst.env_mut().events);
        events.sort_by_key(|(ts, _)| *ts);
        for (ts, e) in events {
            inst.on_order(ts, &e)?;
        }
        let done: u64 = cursor.iter().map(|&c| c as u64).sum();
        if !progress(done as f64 / total_rows.max(1) as f64) {
            return Err(RunError::Cancelled);
        }
    }
    let (_, dropped) = inst.take_logs();
    mark_ledger(inst.env_mut(), &data, &last_mark);
    let env = inst.env();
    Ok(RunResult {
        fills,
        equity,
        rejections: env.rejections.clone(),
        final_cash: env.ledger.cash,
        final_equity: env.ledger.equity(),
        rows: total_rows,
        log_lines_dropped: dropped,
    })
}

/// The earliest decision time among `symbol`'s pending orders.
fn earliest_decision(pending: &[Pending], symbol: &str) -> i64 {
    pending
        .iter()
        .filter(|p| p.symbol == symbol)
        .map(|p| p.decided)
        .min()
        .unwrap_or(i64::MAX)
}

fn mark_ledger<S: Series>(env: &mut SimEnv, data: &[&S], last_mark: &[Option<f64>]) {
    for (d, m) in data.iter().zip(last_mark) {
        if let (Some(m), true) = (m, env.ledger.positions.contains_key(d.symbol())) {
            env.ledger.mark(d.symbol(), dec(*m).unwrap_or_default());
        }
    }
}

/// Tries the pending orders of `d`'s symbol decided before row `i` on it.
fn fill_symbol<S: Series>(
    env: &mut SimEnv,
    d: &S,
    i: usize,
    slippage: Slippage,
    fills: &mut Vec<Fill>,
) -> Result<(), RunError> {
    let (symbol, ts) = (d.symbol(), d.ts()[i]);
    let tick = env
        .ledger
        .instrument(symbol)
        .map_or(Decimal::ZERO, |i| i.price_tick);
    let mut due: Vec<Pending> = Vec::new();
    env.pending.retain(|p| {
        let take = p.symbol == symbol && p.decided < ts;
        if take {
            due.push(p.clone());
        }
        !take
    });
    due.sort_by_key(|p| (priority(p.kind), p.seq));
    for mut p in due {
        let px = d.px(i, p.rested).map_err(RunError::Invalid)?;
        match fill_price(p.kind, p.qty > Decimal::ZERO, px, slippage, tick) {
            Some(price) => {
                let fill = env.ledger.apply(ts, symbol, &p.client_id, p.qty, price)?;
                if p.kind != Kind::Market {
                    *env.expected.entry(symbol.to_string()).or_default() += p.qty;
                }
                env.events
                    .push((ts, event(&p, OrderState::Filled, p.qty, price, "")));
                fills.push(fill);
            }
            None => {
                p.rested = true;
                env.pending.push(p);
            }
        }
    }
    env.pending.sort_by_key(|p| p.seq);
    Ok(())
}
