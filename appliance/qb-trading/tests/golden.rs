//! Hand-worked fills and PnL.

use qb_core::market::Instrument;
use qb_trading::execution::*;
use qb_trading::ledger::Ledger;
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn bar(o: &str, h: &str, l: &str) -> Px {
    Px::Bar(BarPx {
        open: d(o),
        high: d(h),
        low: d(l),
    })
}

fn quote(bid: &str, ask: &str, rested: bool) -> Px {
    Px::Quote {
        quote: QuotePx {
            bid: d(bid),
            ask: d(ask),
        },
        rested,
    }
}

/// 2024-01-02T01:00:00Z and one day later, in ns.
const DAY1: i64 = 1_704_157_200_000_000_000;
const DAY2: i64 = DAY1 + 86_400_000_000_000;

fn rebar() -> Instrument {
    let mut i = Instrument::with_defaults("rb2410");
    i.multiplier = d("10");
    i.price_tick = d("1");
    i.margin_ratio = d("0.1");
    i.timezone = "Asia/Shanghai".into();
    i.fees.open_rate = d("0.0001");
    i.fees.close_rate = d("0.0001");
    i.fees.close_today_rate = d("0.0003");
    i.fees.open_per_lot = d("1");
    i
}

#[test]
fn market_limit_and_stop_prices() {
    let t = d("1");
    let b = bar("100", "110", "95");
    let none = Slippage::None;
    assert_eq!(fill_price(Kind::Market, true, b, none, t), Some(d("100")));
    assert_eq!(
        fill_price(Kind::Market, true, b, Slippage::Ticks(2), t),
        Some(d("102"))
    );
    assert_eq!(
        fill_price(Kind::Market, false, b, Slippage::Ticks(2), t),
        Some(d("98"))
    );
    // 5 bps of 100 = 0.05, rounded against the trader to the 1.0 tick.
    assert_eq!(
        fill_price(Kind::Market, true, b, Slippage::Bps(d("5")), t),
        Some(d("101"))
    );
    assert_eq!(
        fill_price(Kind::Market, false, b, Slippage::Bps(d("5")), t),
        Some(d("99"))
    );
    // Limits: touched -> the limit; gapped through -> the better open; not reached -> none.
    assert_eq!(
        fill_price(Kind::Limit(d("97")), true, b, none, t),
        Some(d("97"))
    );
    assert_eq!(
        fill_price(Kind::Limit(d("105")), true, b, none, t),
        Some(d("100"))
    );
    assert_eq!(fill_price(Kind::Limit(d("94")), true, b, none, t), None);
    assert_eq!(
        fill_price(Kind::Limit(d("108")), false, b, none, t),
        Some(d("108"))
    );
    assert_eq!(
        fill_price(Kind::Limit(d("90")), false, b, none, t),
        Some(d("100"))
    );
    assert_eq!(fill_price(Kind::Limit(d("111")), false, b, none, t), None);
    // Stops: touched -> the stop (+ slippage); gapped through -> the worse open.
    assert_eq!(
        fill_price(Kind::Stop(d("105")), true, b, Slippage::Ticks(1), t),
        Some(d("106"))
    );
    assert_eq!(
        fill_price(Kind::Stop(d("90")), true, b, none, t),
        Some(d("100"))
    );
    assert_eq!(fill_price(Kind::Stop(d("111")), true, b, none, t), None);
    assert_eq!(
        fill_price(Kind::Stop(d("96")), false, b, none, t),
        Some(d("96"))
    );
    assert_eq!(
        fill_price(Kind::Stop(d("104")), false, b, none, t),
        Some(d("100"))
    );
    // Stops are tried before limits on the same bar.
    assert!(priority(Kind::Stop(d("1"))) < priority(Kind::Limit(d("1"))));
}

#[test]
fn quote_prices() {
    let t = d("0.5");
    let none = Slippage::None;
    let q = quote("99.5", "100", false);
    // Market: buy at the ask, sell at the bid; slippage against the trader.
    assert_eq!(fill_price(Kind::Market, true, q, none, t), Some(d("100")));
    assert_eq!(fill_price(Kind::Market, false, q, none, t), Some(d("99.5")));
    assert_eq!(
        fill_price(Kind::Market, true, q, Slippage::Ticks(2), t),
        Some(d("101"))
    );
    // 10 bps of 99.5 = 0.0995 → 99.4005, rounded down to the tick: 99.
    assert_eq!(
        fill_price(Kind::Market, false, q, Slippage::Bps(d("10")), t),
        Some(d("99"))
    );
    // Limit buy: marketable on arrival fills at the ask; resting, at its
    // own price; not reached, nothing. No slippage.
    assert_eq!(
        fill_price(Kind::Limit(d("101")), true, q, Slippage::Ticks(3), t),
        Some(d("100"))
    );
    assert_eq!(
        fill_price(
            Kind::Limit(d("101")),
            true,
            quote("98", "98.5", true),
            none,
            t
        ),
        Some(d("101"))
    );
    assert_eq!(fill_price(Kind::Limit(d("99.5")), true, q, none, t), None);
    // Limit sell: against the bid.
    assert_eq!(
        fill_price(Kind::Limit(d("99")), false, q, none, t),
        Some(d("99.5"))
    );
    assert_eq!(
        fill_price(
            Kind::Limit(d("99")),
            false,
            quote("99", "99.5", true),
            none,
            t
        ),
        Some(d("99"))
    );
    assert_eq!(fill_price(Kind::Limit(d("100")), false, q, none, t), None);
    // Stops trigger on the price they would trade at and fill there.
    assert_eq!(
        fill_price(Kind::Stop(d("100")), true, q, Slippage::Ticks(1), t),
        Some(d("100.5"))
    );
    assert_eq!(fill_price(Kind::Stop(d("100.5")), true, q, none, t), None);
    assert_eq!(
        fill_price(Kind::Stop(d("99.5")), false, q, none, t),
        Some(d("99.5"))
    );
    assert_eq!(fill_price(Kind::Stop(d("99")), false, q, none, t), None);
}

#[test]
fn futures_accounting_with_multiplier_and_close_today_fees() {
    let mut l = Ledger::new(d("100000"), [rebar()]);
    // Day 1: buy 3 at 3900: fee = 3*3900*10*0.0001 + 3*1 = 11.7 + 3 = 14.7.
    let f = l.apply(DAY1, "rb2410", "a", d("3"), d("3900")).unwrap();
    assert_eq!(f.commission, d("14.7"));
    assert_eq!(l.cash, d("99985.3"));
    // Buy 1 more at 3910: average (3*3900 + 3910) / 4 = 3902.5.
    l.apply(DAY1, "rb2410", "b", d("1"), d("3910")).unwrap();
    let p = &l.positions["rb2410"];
    assert_eq!(
        (p.qty, p.avg_price, p.today_qty),
        (d("4"), d("3902.5"), d("4"))
    );
    // Marked at 3920: unrealized (3920-3902.5)*4*10 = 700; margin 4*3920*10*0.1 = 15680.
    l.mark("rb2410", d("3920"));
    assert_eq!(l.unrealized(), d("700"));
    assert_eq!(l.margin(None), d("15680"));
    // Same day: sell 1 at 3930 closes a today lot: close-today rate
    // 1*3930*10*0.0003 = 11.79; realized (3930-3902.5)*1*10 = 275.
    let f = l
        .apply(DAY1 + 3_600_000_000_000, "rb2410", "c", d("-1"), d("3930"))
        .unwrap();
    assert_eq!((f.realized, f.commission), (d("275"), d("11.79")));
    // Next day: sell 5 at 3890: closes 3 (older lots, close rate:
    // 3*3890*10*0.0001 = 11.67), opens 2 short (2*3890*10*0.0001 + 2 = 9.78).
    let f = l.apply(DAY2, "rb2410", "d", d("-5"), d("3890")).unwrap();
    assert_eq!(f.commission, d("21.45"));
    assert_eq!(f.realized, d("-375")); // (3890-3902.5)*3*10
    let p = &l.positions["rb2410"];
    assert_eq!(
        (p.qty, p.avg_price, p.today_qty),
        (d("-2"), d("3890"), d("-2"))
    );
    // Cash = 100000 - 14.7 - (1*3910*10*0.0001 + 1) + 275 - 11.79 - 375 - 21.45
    assert_eq!(
        l.cash,
        d("100000") - d("14.7") - d("4.91") + d("275") - d("11.79") - d("375") - d("21.45")
    );
    // Short marked lower is a gain.
    l.mark("rb2410", d("3880"));
    assert_eq!(l.unrealized(), d("200"));
    assert_eq!(l.equity(), l.cash + d("200"));
}

#[test]
fn margin_is_checked_before_accepting() {
    let mut l = Ledger::new(d("50000"), [rebar()]);
    l.mark("rb2410", d("4000"));
    // 12 lots at 4000: margin 12*4000*10*0.1 = 48000 (+ fees 48+12) fits in 50000.
    assert!(
        l.check_margin(DAY1, "rb2410", d("12"), d("12"), d("4000"))
            .is_ok()
    );
    // 13 lots: 52000 does not.
    let e = l
        .check_margin(DAY1, "rb2410", d("13"), d("13"), d("4000"))
        .unwrap_err();
    assert!(
        e.contains("insufficient margin") && e.contains("52000"),
        "{e}"
    );
    // Closing never needs margin.
    l.apply(DAY1, "rb2410", "x", d("12"), d("4000")).unwrap();
    assert!(
        l.check_margin(DAY1, "rb2410", d("0"), d("-12"), d("4000"))
            .is_ok()
    );
}

#[test]
fn decimals_from_floats_are_the_shortest_round_trip() {
    assert_eq!(qb_trading::dec(3900.1), Some(d("3900.1")));
    assert_eq!(qb_trading::dec(0.1 + 0.2), Some(d("0.30000000000000004")));
    assert_eq!(qb_trading::dec(f64::NAN), None);
    assert_eq!(round_to_tick(d("3900.12"), d("0.5"), true), d("3900.5"));
    assert_eq!(round_to_tick(d("3900.12"), d("0.5"), false), d("3900"));
}
