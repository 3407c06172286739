//! The trait strategies implement and the context they act through.

use crate::{
    Account, Bars, Info, LogLevel, Order, OrderEvent, OrderType, Param, ParamSpec, ParamType,
    Position, Side, Ticks,
};

/// What a strategy can do while handling an event. In WebAssembly the calls
/// go to the quantbox host; natively the engine provides an implementation.
pub trait Ctx {
    /// Submits an order; `Err` with the reason when the host refuses it at once.
    fn submit_order(&mut self, order: Order) -> Result<(), String>;
    /// Cancels an open order by its client id.
    fn cancel_order(&mut self, client_id: &str) -> Result<(), String>;
    /// The current position in a symbol.
    fn position(&mut self, symbol: &str) -> Position;
    /// The strategy's account figures.
    fn account(&mut self) -> Account;
    /// Writes to the strategy's log (rate-limited by the host).
    fn log(&mut self, level: LogLevel, message: &str);
    /// Reads persisted state.
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>>;
    /// Persists state.
    fn state_set(&mut self, key: &str, value: &[u8]);
    /// A deterministic random number (seeded by the host per run).
    fn random_u64(&mut self) -> u64;

    /// Submits a market order decided on the bar or tick at `ts`; a
    /// refusal is logged as a warning and returned.
    fn market(
        &mut self,
        ts: i64,
        client_id: String,
        symbol: &str,
        side: Side,
        quantity: f64,
    ) -> Result<(), String> {
        let order = Order {
            client_id,
            symbol: symbol.to_string(),
            side,
            quantity,
            type_: OrderType::Market,
            ts,
        };
        self.submit_order(order).inspect_err(|e| {
            self.log(LogLevel::Warn, &format!("order refused: {e}"));
        })
    }
}

/// A trading strategy. Only `describe` and `init` are required.
pub trait Strategy: Sized + 'static {
    /// Name, version, parameters and data needs.
    fn describe() -> Info;
    /// Builds the strategy from parameters and, after a restart or hot swap,
    /// the state a previous instance returned from [`Strategy::snapshot`].
    fn init(params: &Params, state: Option<Vec<u8>>) -> Result<Self, String>;
    /// A batch of bars of one symbol.
    fn on_bars(&mut self, _ctx: &mut dyn Ctx, _now: i64, _bars: &Bars) {}
    /// A batch of ticks of one symbol.
    fn on_ticks(&mut self, _ctx: &mut dyn Ctx, _now: i64, _ticks: &Ticks) {}
    /// An order of this strategy changed state.
    fn on_order(&mut self, _ctx: &mut dyn Ctx, _now: i64, _event: &OrderEvent) {}
    /// A timer fired.
    fn on_timer(&mut self, _ctx: &mut dyn Ctx, _now: i64) {}
    /// State to hand to the next instance.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// Parameter values with the declared defaults filled in and ranges checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Params(Vec<(String, f64)>);

impl Params {
    /// Resolves given values against the specs: unknown names, values out of
    /// range and non-integers for `int` parameters are errors.
    pub fn resolve(specs: &[ParamSpec], given: &[Param]) -> Result<Self, String> {
        for g in given {
            if !specs.iter().any(|s| s.name == g.name) {
                return Err(format!("unknown parameter {:?}", g.name));
            }
        }
        let mut out = Vec::with_capacity(specs.len());
        for s in specs {
            let v = given
                .iter()
                .find(|g| g.name == s.name)
                .map_or(s.default, |g| g.value);
            if !v.is_finite() {
                return Err(format!("{}: {v} is not a finite number", s.name));
            }
            if s.min.is_some_and(|m| v < m) || s.max.is_some_and(|m| v > m) {
                return Err(format!(
                    "{}: {v} is outside [{}, {}]",
                    s.name,
                    s.min.map_or("-inf".into(), |m| m.to_string()),
                    s.max.map_or("inf".into(), |m| m.to_string())
                ));
            }
            match s.type_ {
                ParamType::Integer if v.fract() != 0.0 => {
                    return Err(format!("{}: {v} is not an integer", s.name));
                }
                ParamType::Boolean if v != 0.0 && v != 1.0 => {
                    return Err(format!("{}: {v} is not 0 or 1", s.name));
                }
                _ => {}
            }
            out.push((s.name.clone(), v));
        }
        Ok(Self(out))
    }

    /// A parameter's value (0 for names not declared).
    pub fn get(&self, name: &str) -> f64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    }

    /// A parameter as an integer.
    pub fn int(&self, name: &str) -> i64 {
        self.get(name) as i64
    }
}

/// Builds an [`Info`] for a single-symbol bar strategy.
pub fn info(name: &str, version: &str, description: &str, params: Vec<ParamSpec>) -> Info {
    Info {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        params,
        symbols: 1,
        intervals: vec!["1m".into()],
    }
}

/// Builds a [`ParamSpec`].
pub fn param(
    name: &str,
    type_: ParamType,
    default: f64,
    min: Option<f64>,
    max: Option<f64>,
    description: &str,
) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        type_,
        default,
        min,
        max,
        description: description.into(),
    }
}
