//! Grid expansion of a sweep.

use std::collections::BTreeMap;

use qb_backtest::job::BacktestSpec;
use qb_backtest::sweep::{MAX_COMBINATIONS, SweepSpec};

fn spec(grid: &[(&str, Vec<f64>)]) -> SweepSpec {
    let base: BacktestSpec = serde_json::from_value(serde_json::json!({
        "plugin": "a".repeat(64), "symbols": ["rb"], "params": {"size": 2.0, "fast": 1.0}
    }))
    .unwrap();
    SweepSpec {
        base,
        grid: grid
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

#[test]
fn grid_expands_in_a_fixed_order_over_the_base() {
    let combos = spec(&[("slow", vec![20.0, 30.0]), ("fast", vec![3.0, 5.0, 8.0])])
        .combinations()
        .unwrap();
    let got: Vec<(f64, f64, f64)> = combos
        .iter()
        .map(|p| (p["fast"], p["slow"], p["size"]))
        .collect();
    // Parameters by name (fast before slow), values as given; base values kept.
    assert_eq!(
        got,
        [
            (3.0, 20.0, 2.0),
            (3.0, 30.0, 2.0),
            (5.0, 20.0, 2.0),
            (5.0, 30.0, 2.0),
            (8.0, 20.0, 2.0),
            (8.0, 30.0, 2.0)
        ]
    );
    assert_eq!(
        spec(&[]).combinations().unwrap(),
        vec![BTreeMap::from([
            ("fast".to_string(), 1.0),
            ("size".to_string(), 2.0)
        ])]
    );
}

#[test]
fn bad_grids_are_refused() {
    assert!(
        spec(&[("fast", vec![])])
            .combinations()
            .unwrap_err()
            .contains("grid.fast")
    );
    assert!(
        spec(&[("fast", vec![f64::NAN])])
            .combinations()
            .unwrap_err()
            .contains("finite")
    );
    let big: Vec<f64> = (0..100).map(f64::from).collect();
    let e = spec(&[("a", big.clone()), ("b", big)])
        .combinations()
        .unwrap_err();
    assert!(e.contains(&MAX_COMBINATIONS.to_string()), "{e}");
}
