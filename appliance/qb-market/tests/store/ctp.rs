use qb_core::TickStore;
use qb_core::market::*;

use crate::*;

/// Night session of trading day 2024-01-08 (a Monday): it starts on Friday
/// 2024-01-05 at 21:00 and runs past midnight into Saturday; DCE-style
/// ActionDay equals TradingDay. Then the day session on Monday, and the
/// next trading day (Tuesday 2024-01-09) whose cumulative volume restarts.
const CTP: &str = "TradingDay,ActionDay,UpdateTime,UpdateMillisec,InstrumentID,LastPrice,Volume,Turnover,OpenInterest,BidPrice1,BidVolume1,AskPrice1,AskVolume1
20240108,20240108,20:59:00,0,m2405,3000,10,300000,1000,2999,5,3001,6
20240108,20240108,21:00:00,500,m2405,3001,15,450050,1001,3000,4,1.7976931348623157e308,0
20240108,20240108,23:59:59,500,m2405,3002,20,600060,1002,3001,3,3003,2
20240108,20240108,00:00:00,0,m2405,3003,26,780078,1003,3002,1,3004,1
20240108,20240108,09:00:00,0,m2405,3004,30,900090,1004,3003,7,3005,8
20240109,20240109,21:00:00,0,m2405,3010,4,120400,1010,3009,1,3011,1
20240109,20240109,21:00:01,0,m2405,3011,9,270455,1011,3010,1,3012,1
";

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: i64) -> i64 {
    let t = chrono_like(y, mo, d, h, mi, s);
    t * S + ms * 1_000_000
}

/// Seconds since the epoch for a UTC civil time (days-from-civil).
fn chrono_like(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + (h * 3600 + mi * 60 + s) as i64
}

#[tokio::test]
async fn ctp_layout_night_sessions_sentinel_and_volume_reset() {
    let (dir, s) = store();
    let path = write(&dir, "ctp.csv", CTP);
    let r = s
        .import(&req(&path, ImportFormat::Ctp), &no_progress)
        .unwrap();
    assert_eq!(
        (r.rows_read, r.rows_stored, r.rows_rejected),
        (7, 7, 0),
        "{r:?}"
    );
    let t = all_ticks(&s, "m2405").await;
    // Shanghai = UTC+8. Friday 2024-01-05 20:59 local = 12:59 UTC.
    let expect_ts = [
        utc(2024, 1, 5, 12, 59, 0, 0),
        utc(2024, 1, 5, 13, 0, 0, 500),
        utc(2024, 1, 5, 15, 59, 59, 500),
        utc(2024, 1, 5, 16, 0, 0, 0), // Saturday 00:00 local
        utc(2024, 1, 8, 1, 0, 0, 0),  // Monday 09:00 local
        utc(2024, 1, 8, 13, 0, 0, 0), // Monday 21:00 local, trading day Tuesday
        utc(2024, 1, 8, 13, 0, 1, 0),
    ];
    assert_eq!(t.iter().map(|t| t.ts).collect::<Vec<_>>(), expect_ts);
    // Cumulative volume -> per-tick size, restarting with the trading day.
    assert_eq!(
        t.iter().map(|t| t.size).collect::<Vec<_>>(),
        vec![10.0, 5.0, 5.0, 6.0, 4.0, 4.0, 5.0]
    );
    assert_eq!(t[1].turnover, Some(150050.0));
    assert_eq!(t[5].turnover, Some(120400.0));
    assert_eq!(t[1].volume, Some(15.0), "the cumulative figure is kept");
    // The DBL_MAX sentinel means "no value".
    assert_eq!((t[1].ask, t[1].ask_size), (None, Some(0.0)));
    assert_eq!(t[0].open_interest, Some(1000.0));

    let bad = CTP.replace("20240108,20240108,09:00:00,0", "20240108,20240108,9h00,0");
    let bad_path = write(&dir, "bad.csv", &bad);
    let r = s
        .import(&req(&bad_path, ImportFormat::Ctp), &no_progress)
        .unwrap();
    assert_eq!(r.rows_stored, 0);
    assert_eq!(r.rejections[0].line, 6);
    assert!(
        r.rejections[0].reason.starts_with("UpdateTime"),
        "{:?}",
        r.rejections
    );
}
