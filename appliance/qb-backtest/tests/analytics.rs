//! Each figure against a hand computation on a tiny curve.

use qb_backtest::analytics::*;
use qb_backtest::ledger::Fill;
use rust_decimal::Decimal;

const DAY: i64 = 86_400_000_000_000;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn fill(ts: i64, symbol: &str, qty: &str, price: &str, fee: &str, realized: &str) -> Fill {
    Fill {
        ts,
        symbol: symbol.into(),
        client_id: String::new(),
        qty: d(qty),
        price: d(price),
        commission: d(fee),
        realized: d(realized),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12 * a.abs().max(1.0)
}

#[test]
fn figures_match_hand_computations() {
    // Initial 100; equity 110, 99, 120, 108 on four consecutive days.
    let equity = [
        (DAY, 110.0),
        (2 * DAY, 99.0),
        (3 * DAY, 120.0),
        (4 * DAY, 108.0),
    ];
    let fills = [
        fill(DAY, "X", "1", "10", "1", "0"),
        fill(2 * DAY, "X", "-1", "20", "1", "10"), // long trip: 10 - 2 = 8
        fill(3 * DAY, "Y", "-2", "5", "0.5", "0"),
        fill(4 * DAY, "Y", "3", "6", "0.5", "-2"), // short closed (-2 - 1 = -3), 1 long opens
    ];
    let (m, trips, per) = metrics(d("100"), &equity, &fills, |s| {
        if s == "Y" { d("10") } else { d("1") }
    });

    let r = [
        0.1,
        99.0 / 110.0 - 1.0,
        120.0 / 99.0 - 1.0,
        108.0 / 120.0 - 1.0,
    ];
    let mean = r.iter().sum::<f64>() / 4.0;
    let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
    let years = 3.0 / 365.25;
    let ppy = 4.0 / years;
    assert!(close(m.periods_per_year, ppy));
    assert!(close(m.total_return, 0.08));
    assert!(close(m.cagr, 1.08f64.powf(1.0 / years) - 1.0));
    assert!(close(m.volatility, sd * ppy.sqrt()));
    assert!(close(m.sharpe, mean / sd * ppy.sqrt()));
    let downside = ((r[1].powi(2) + r[3].powi(2)) / 4.0).sqrt();
    assert!(close(m.sortino, mean / downside * ppy.sqrt()));
    // Peak 110 -> 99 is 10%; peak 120 -> 108 is 10% too; the open drawdown
    // from day 3 to the end lasts 1 day, 110 -> regained at 120 lasts 2.
    assert!(close(m.max_drawdown, 0.1));
    assert!(close(m.max_drawdown_duration, 2.0 * 86_400.0));
    assert!(close(m.calmar, m.cagr / 0.1));

    assert_eq!(trips.len(), 2);
    assert_eq!(
        (trips[0].symbol.as_str(), trips[0].direction, trips[0].pnl),
        ("X", 1, d("8"))
    );
    assert_eq!(
        (trips[1].symbol.as_str(), trips[1].direction, trips[1].pnl),
        ("Y", -1, d("-3"))
    );
    assert_eq!(m.round_trips, 2);
    assert!(close(m.win_rate, 0.5));
    assert!(close(m.profit_factor, 8.0 / 3.0));
    assert!(close(m.avg_win, 8.0) && close(m.avg_loss, -3.0));
    assert!(close(m.total_fees, 3.0));
    // Notional: 10 + 20 + 2*5*10 + 3*6*10 = 310, over 100.
    assert!(close(m.turnover, 3.1));
    // Open after day 1 (X), flat after day 2, open after days 3 and 4 (Y).
    assert!(close(m.exposure, 0.75));
    assert_eq!(per["X"].fills, 2);
    assert_eq!(per["Y"].realized, d("-2"));
    assert_eq!(per["Y"].fees, d("1"));
}

#[test]
fn an_empty_run_has_zero_figures() {
    let (m, trips, _) = metrics(d("100"), &[], &[], |_| Decimal::ONE);
    assert_eq!(m, Metrics::default());
    assert!(trips.is_empty());
}
