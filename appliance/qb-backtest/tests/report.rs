//! The HTML report is self-contained and shows what it should.

use qb_backtest::analytics::metrics;
use qb_backtest::ledger::Fill;
use qb_backtest::report::{ReportInput, esc, html};
use rust_decimal::Decimal;

#[test]
fn report_is_self_contained_and_complete() {
    let day = 86_400_000_000_000i64;
    let equity: Vec<(i64, f64)> = (1..=5000)
        .map(|i| (i * day / 10, 100.0 + (i as f64 / 50.0).sin() * 5.0))
        .collect();
    let fills = vec![
        Fill {
            ts: day,
            symbol: "rb<2410>".into(),
            client_id: "a".into(),
            qty: Decimal::from(2),
            price: Decimal::from(3900),
            commission: Decimal::ONE,
            realized: Decimal::ZERO,
        },
        Fill {
            ts: 2 * day,
            symbol: "rb<2410>".into(),
            client_id: "b".into(),
            qty: Decimal::from(-2),
            price: Decimal::from(3950),
            commission: Decimal::ONE,
            realized: Decimal::from(100),
        },
    ];
    let (m, trips, _) = metrics(Decimal::from(100), &equity, &fills, |_| Decimal::ONE);
    let settings = vec![(
        "Plugin".to_string(),
        "sma-crossover 0.1.0 <script>".to_string(),
    )];
    let doc = html(&ReportInput {
        title: "SMA & co",
        settings: &settings,
        metrics: &m,
        equity: &equity,
        fills: &fills,
        trips: &trips,
        result_hash: "abc",
    });
    assert!(doc.starts_with("<!doctype html>"));
    // Nothing fetched or executed: no scripts, no external references.
    for banned in ["<script", "src=", "href=", "http://", "https://", "@import"] {
        assert!(!doc.contains(banned), "{banned}");
    }
    // User-supplied text is escaped.
    assert!(
        doc.contains("SMA &amp; co")
            && doc.contains("&lt;script&gt;")
            && doc.contains("rb&lt;2410&gt;")
    );
    // Metrics, both charts (thinned to a bounded number of points), trades, fills.
    assert!(
        doc.contains("Sharpe")
            && doc.contains("Max drawdown")
            && doc.contains(&format!("{:.3}", m.sharpe))
    );
    assert_eq!(doc.matches("<svg").count(), 2);
    let path = doc.split("<path d=\"").nth(1).unwrap();
    let points = path.split('"').next().unwrap().matches('L').count() + 1;
    assert!((1000..=1202).contains(&points), "{points}");
    assert!(
        doc.contains("<td>long</td>") && doc.contains("<td>98</td>"),
        "round trip PnL 100 - 2 fees"
    );
    assert!(doc.contains("<td>buy</td>") && doc.contains("<td>3950</td>"));
    assert_eq!(esc("a\"b'c"), "a&quot;b&#39;c");
}
