//! Independent, from-scratch computations over a whole prefix, used to
//! check the streaming indicators value by value, plus hand-computed cases.

use super::*;

/// A deterministic random walk with highs and lows.
fn series(n: usize) -> Vec<(f64, f64, f64)> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    let mut close = 100.0;
    (0..n)
        .map(|_| {
            close += (rnd() - 0.5) * 2.0;
            let high = close + rnd();
            let low = close - rnd();
            (high, low, close)
        })
        .collect()
}

fn close_enough(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn naive_sma(xs: &[f64], n: usize) -> Option<f64> {
    (xs.len() >= n).then(|| xs[xs.len() - n..].iter().sum::<f64>() / n as f64)
}

fn naive_ema(xs: &[f64], n: usize) -> Option<f64> {
    if xs.len() < n {
        return None;
    }
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut v = xs[..n].iter().sum::<f64>() / n as f64;
    for x in &xs[n..] {
        v = alpha * x + (1.0 - alpha) * v;
    }
    Some(v)
}

fn naive_rsi(xs: &[f64], n: usize) -> Option<f64> {
    if xs.len() < n + 1 {
        return None;
    }
    let changes: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
    let mut gain = changes[..n].iter().map(|c| c.max(0.0)).sum::<f64>() / n as f64;
    let mut loss = changes[..n].iter().map(|c| (-c).max(0.0)).sum::<f64>() / n as f64;
    for c in &changes[n..] {
        gain = (gain * (n as f64 - 1.0) + c.max(0.0)) / n as f64;
        loss = (loss * (n as f64 - 1.0) + (-c).max(0.0)) / n as f64;
    }
    Some(if loss == 0.0 {
        if gain == 0.0 { 50.0 } else { 100.0 }
    } else {
        100.0 * gain / (gain + loss)
    })
}

fn naive_atr(bars: &[(f64, f64, f64)], n: usize) -> Option<f64> {
    if bars.len() < n {
        return None;
    }
    let trs: Vec<f64> = bars
        .iter()
        .enumerate()
        .map(|(i, &(h, l, _))| {
            if i == 0 {
                h - l
            } else {
                let pc = bars[i - 1].2;
                [h - l, (h - pc).abs(), (l - pc).abs()]
                    .into_iter()
                    .fold(f64::MIN, f64::max)
            }
        })
        .collect();
    let mut v = trs[..n].iter().sum::<f64>() / n as f64;
    for tr in &trs[n..] {
        v = (v * (n as f64 - 1.0) + tr) / n as f64;
    }
    Some(v)
}

fn naive_sd(xs: &[f64], n: usize) -> Option<f64> {
    let w = xs.get(xs.len().checked_sub(n)?..)?;
    let mean = w.iter().sum::<f64>() / n as f64;
    Some((w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt())
}

#[test]
fn streaming_matches_from_scratch() {
    let bars = series(600);
    let closes: Vec<f64> = bars.iter().map(|b| b.2).collect();
    let (mut sma, mut ema, mut rsi, mut atr) =
        (Sma::new(20), Ema::new(20), Rsi::new(14), Atr::new(14));
    let (mut boll, mut don, mut macd) = (
        Bollinger::new(20, 2.0),
        Donchian::new(20),
        Macd::new(12, 26, 9),
    );
    let mut macd_hist = Vec::new();
    for (i, &(h, l, c)) in bars.iter().enumerate() {
        let prefix = &closes[..=i];
        let check = |name: &str, got: Option<f64>, want: Option<f64>| match (got, want) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(close_enough(a, b), "{name} at {i}: {a} vs {b}"),
            other => panic!("{name} at {i}: readiness differs {other:?}"),
        };
        check("sma", sma.update(c), naive_sma(prefix, 20));
        check("ema", ema.update(c), naive_ema(prefix, 20));
        check("rsi", rsi.update(c), naive_rsi(prefix, 14));
        check("atr", atr.update(h, l, c), naive_atr(&bars[..=i], 14));
        let b = boll.update(c);
        check(
            "bollinger.middle",
            b.map(|b| b.middle),
            naive_sma(prefix, 20),
        );
        check(
            "bollinger.upper",
            b.map(|b| b.upper),
            naive_sma(prefix, 20)
                .zip(naive_sd(prefix, 20))
                .map(|(m, s)| m + 2.0 * s),
        );
        let d = don.update(h, l);
        let want = (i >= 19).then(|| {
            let w = &bars[i - 19..=i];
            (
                w.iter().map(|b| b.0).fold(f64::MIN, f64::max),
                w.iter().map(|b| b.1).fold(f64::MAX, f64::min),
            )
        });
        assert_eq!(d.map(|c| (c.upper, c.lower)), want, "donchian at {i}");
        // MACD from its definition: EMA12 - EMA26 of the prefix, then EMA9 of that series.
        let m = macd.update(c);
        if let (Some(f), Some(s)) = (naive_ema(prefix, 12), naive_ema(prefix, 26)) {
            macd_hist.push(f - s);
        }
        check("macd.signal", m.map(|v| v.signal), naive_ema(&macd_hist, 9));
        check(
            "macd.macd",
            m.map(|v| v.macd),
            naive_ema(&macd_hist, 9).and(macd_hist.last().copied()),
        );
    }
    assert!(rsi.value().unwrap() > 0.0 && rsi.value().unwrap() < 100.0);
}

#[test]
fn hand_computed_values() {
    let mut s = Sma::new(3);
    let got: Vec<_> = [1.0, 2.0, 3.0, 4.0, 5.0].map(|x| s.update(x)).to_vec();
    assert_eq!(got, vec![None, None, Some(2.0), Some(3.0), Some(4.0)]);

    let mut e = Ema::new(3);
    let got: Vec<_> = [1.0, 2.0, 3.0, 4.0, 5.0].map(|x| e.update(x)).to_vec();
    assert_eq!(got, vec![None, None, Some(2.0), Some(3.0), Some(4.0)]);

    let mut r = Rsi::new(2);
    let got: Vec<_> = [1.0, 2.0, 1.0, 2.0].map(|x| r.update(x)).to_vec();
    assert_eq!(got, vec![None, None, Some(50.0), Some(75.0)]);
    let mut up = Rsi::new(2);
    assert_eq!([1.0, 2.0, 3.0].map(|x| up.update(x))[2], Some(100.0));

    let mut a = Atr::new(2);
    let got: Vec<_> = [(10.0, 8.0, 9.0), (13.0, 9.0, 12.0), (12.0, 11.0, 11.0)]
        .map(|(h, l, c)| a.update(h, l, c))
        .to_vec();
    assert_eq!(got, vec![None, Some(3.0), Some(2.0)]);

    let mut b = Bollinger::new(3, 2.0);
    b.update(1.0);
    b.update(2.0);
    let bands = b.update(3.0).unwrap();
    assert!((bands.sd - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert!((bands.upper - (2.0 + 2.0 * (2.0f64 / 3.0).sqrt())).abs() < 1e-12);

    let mut d = Donchian::new(2);
    assert_eq!(d.update(5.0, 1.0), None);
    assert_eq!(
        d.update(7.0, 3.0),
        Some(Channel {
            upper: 7.0,
            lower: 1.0
        })
    );
    assert_eq!(
        d.update(6.0, 2.0),
        Some(Channel {
            upper: 7.0,
            lower: 2.0
        })
    );

    let mut m = Macd::new(2, 3, 2);
    let got: Vec<_> = [1.0, 2.0, 3.0, 4.0].map(|x| m.update(x)).to_vec();
    assert_eq!(got[..3], [None, None, None]);
    let v = got[3].unwrap();
    assert!(
        (v.macd - 0.5).abs() < 1e-12 && (v.signal - 0.5).abs() < 1e-12 && v.histogram.abs() < 1e-12
    );
}
