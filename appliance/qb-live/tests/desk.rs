//! The desk over real stores (redb file, SQLite file) and the paper
//! broker: fills against quotes, idempotent client ids, every risk rule at
//! limit − 1 / limit / limit + 1, self-trade prevention, the kill switch,
//! and restoring everything from disk.

use std::path::Path;
use std::sync::Arc;

use qb_core::{KvStore, MetaStore, PubSub};
use qb_live::*;
use qb_store::{LocalPubSub, RedbKv, Sqlite};
use rust_decimal::Decimal;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

const T0: i64 = 1_704_157_200_000_000_000;

struct Stores {
    kv: Arc<dyn KvStore>,
    meta: Arc<dyn MetaStore>,
    pubsub: Arc<dyn PubSub>,
}

fn stores(dir: &Path) -> Stores {
    Stores {
        kv: Arc::new(RedbKv::open(dir.join("state.redb")).unwrap()),
        meta: Arc::new(Sqlite::open(dir.join("meta.db")).unwrap()),
        pubsub: Arc::new(LocalPubSub::new()),
    }
}

async fn desk(s: &Stores) -> Desk {
    Desk::open(
        s.kv.clone(),
        s.meta.clone(),
        s.pubsub.clone(),
        Box::new(PaperBroker::new(0)),
        "paper",
        d("100000"),
    )
    .await
    .unwrap()
}

fn req(id: &str, side: Side, qty: &str, t: OrderType, price: Option<&str>) -> OrderRequest {
    OrderRequest {
        client_id: id.into(),
        symbol: "X".into(),
        side,
        qty: d(qty),
        order_type: t,
        price: price.map(d),
    }
}

fn market(id: &str, side: Side, qty: &str) -> OrderRequest {
    req(id, side, qty, OrderType::Market, None)
}

fn limit(id: &str, side: Side, qty: &str, px: &str) -> OrderRequest {
    req(id, side, qty, OrderType::Limit, Some(px))
}

async fn quote(desk: &Desk, i: i64, last: f64, bid: f64, ask: f64) {
    desk.on_tick("X", T0 + i * 1_000_000_000, last, Some(bid), Some(ask))
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_deletes_final_orders_with_their_fills_and_keeps_open_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stores(tmp.path());
    let desk = desk(&s).await;
    quote(&desk, 0, 100.0, 99.0, 101.0).await;
    let filled = desk
        .submit("paper", None, market("f1", Side::Buy, "2"))
        .await
        .unwrap()
        .order;
    let resting = desk
        .submit("paper", None, limit("r1", Side::Buy, "1", "90"))
        .await
        .unwrap()
        .order;
    let unquoted = OrderRequest {
        symbol: "Y".into(),
        ..market("x1", Side::Buy, "1")
    };
    let rejected = desk.submit("paper", None, unquoted).await.unwrap().order;
    assert_eq!(rejected.state, OrderState::Rejected, "{rejected:?}");
    let book = desk.positions("paper").await.unwrap();
    // Nothing is old enough yet.
    assert_eq!(desk.prune(filled.updated_at).await.unwrap(), (0, 0));
    // Everything final is, a millisecond from now.
    let (orders, fills) = desk
        .prune(chrono::Utc::now().timestamp_millis() + 1)
        .await
        .unwrap();
    assert_eq!((orders, fills), (2, 1));
    assert!(desk.order("paper", &filled.id).await.is_err());
    assert!(desk.fills("paper").await.unwrap().is_empty());
    // The open order, the book and the positions are untouched.
    assert_eq!(
        desk.order("paper", &resting.id).await.unwrap().state,
        OrderState::Accepted
    );
    assert_eq!(desk.positions("paper").await.unwrap(), book);
    // A pruned client id may be used again: a new order.
    let again = desk
        .submit("paper", None, market("f1", Side::Buy, "1"))
        .await
        .unwrap();
    assert!(!again.repeat);
    assert_ne!(again.order.id, filled.id);
    // Still the case after a restart.
    drop(desk);
    let desk = self::desk(&s).await;
    assert!(desk.order("paper", &filled.id).await.is_err());
    assert_eq!(desk.open_orders("paper").await.unwrap().len(), 1);
}

#[tokio::test]
async fn two_first_submissions_of_one_client_id_are_one_order() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stores(tmp.path());
    let desk = desk(&s).await;
    quote(&desk, 0, 100.0, 99.0, 101.0).await;
    let (x, y) = tokio::join!(
        desk.submit("paper", None, market("twice", Side::Buy, "1")),
        desk.submit("paper", None, market("twice", Side::Buy, "1")),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.order.id, y.order.id);
    // Only one of them is told it created the order.
    assert_ne!(x.repeat, y.repeat);
    assert_eq!(desk.fills("paper").await.unwrap().len(), 1);
}

#[tokio::test]
async fn orders_fill_at_quotes_and_positions_are_the_sum_of_fills() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stores(tmp.path());
    let desk = desk(&s).await;
    let o = desk
        .submit("paper", None, market("m0", Side::Buy, "1"))
        .await
        .unwrap()
        .order;
    assert_eq!(o.state, OrderState::Rejected);
    assert_eq!(o.rule.as_deref(), Some("no_quote"));

    quote(&desk, 0, 100.0, 99.0, 101.0).await;
    let o = desk
        .submit("paper", None, market("m1", Side::Buy, "2"))
        .await
        .unwrap()
        .order;
    assert_eq!(o.state, OrderState::Filled, "{o:?}");
    assert_eq!(o.avg_fill_price, Some(d("101")));
    // The same client id again: the same order, no second fill.
    let again = desk
        .submit("paper", None, market("m1", Side::Buy, "2"))
        .await
        .unwrap();
    assert!(again.repeat);
    assert_eq!(again.order.id, o.id);
    assert_eq!(desk.fills("paper").await.unwrap().len(), 1);

    // A resting limit fills at its own price when the ask comes down.
    let l = desk
        .submit("paper", Some("s1"), limit("l1", Side::Buy, "1", "98"))
        .await
        .unwrap()
        .order;
    assert_eq!(l.state, OrderState::Accepted);
    quote(&desk, 1, 99.0, 98.5, 99.5).await;
    assert_eq!(desk.open_orders("paper").await.unwrap().len(), 1);
    quote(&desk, 2, 97.0, 96.0, 97.0).await;
    assert!(desk.open_orders("paper").await.unwrap().is_empty());
    let l = desk.order("paper", &l.id).await.unwrap();
    assert_eq!(
        (l.state, l.avg_fill_price),
        (OrderState::Filled, Some(d("98")))
    );
    desk.submit("paper", Some("s1"), market("m2", Side::Sell, "2"))
        .await
        .unwrap();

    let fills = desk.fills("paper").await.unwrap();
    assert_eq!(fills.len(), 3);
    assert_eq!(fills.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let net: Decimal = fills.iter().map(|f| f.qty * f.side.sign()).sum();
    let pos = desk.positions("paper").await.unwrap();
    let account = pos.iter().find(|p| p.strategy.is_none()).unwrap();
    assert_eq!(account.qty, net);
    assert_eq!(account.qty, d("1"));
    // Per strategy: manual holds +2, s1 bought 1 and sold 2: -1.
    let of = |s: &str| {
        pos.iter()
            .find(|p| p.strategy.as_deref() == Some(s))
            .unwrap()
            .qty
    };
    assert_eq!((of("manual"), of("s1")), (d("2"), d("-1")));
    let view = desk.account("paper").await.unwrap();
    assert_eq!(view.pnl_by_strategy.len(), 2);
    // Sold 2 at the bid 96 after buying at 101 and 98: cash moves by realized PnL.
    assert_eq!(view.cash, d("100000") + (d("96") - d("100")) * d("2"));
}

async fn cancel_all(desk: &Desk) {
    for o in desk.open_orders("paper").await.unwrap() {
        desk.cancel("paper", &o.id, "test").await.unwrap();
    }
}

/// Submits orders one by one and returns the rules that rejected them
/// (`None`: accepted).
async fn rules(
    desk: &Desk,
    strategy: Option<&str>,
    orders: Vec<OrderRequest>,
) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for o in orders {
        out.push(desk.submit("paper", strategy, o).await.unwrap().order.rule);
    }
    out
}

#[tokio::test]
async fn every_risk_rule_at_its_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stores(tmp.path());
    let desk = desk(&s).await;
    quote(&desk, 0, 100.0, 100.0, 100.0).await;
    let set = |l: RiskLimits| desk.set_limits("paper", None, l);
    let none = || None::<String>;
    let rule = |r: &str| Some(r.to_string());

    set(RiskLimits {
        max_order_qty: Some(d("5")),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = rules(
        &desk,
        None,
        vec![
            limit("q4", Side::Buy, "4", "90"),
            limit("q5", Side::Buy, "5", "90"),
            limit("q6", Side::Buy, "6", "90"),
        ],
    )
    .await;
    assert_eq!(r, [none(), none(), rule("max_order_qty")]);
    let rejected = desk
        .order("paper", &desk.all_orders("paper").await.unwrap()[2].id)
        .await
        .unwrap();
    assert!(rejected.reason.unwrap().contains("quantity 6 exceeds 5"));
    cancel_all(&desk).await;

    // Notional: qty × price × multiplier (1).
    set(RiskLimits {
        max_order_notional: Some(d("1000")),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = rules(
        &desk,
        None,
        vec![
            limit("n1", Side::Buy, "1", "99.9"),
            limit("n2", Side::Buy, "20", "50"),
            limit("n3", Side::Buy, "1", "1000.01"),
        ],
    )
    .await;
    assert_eq!(r, [none(), none(), rule("max_order_notional")]);
    cancel_all(&desk).await;

    // Collar ±5 % around the last price 100.
    set(RiskLimits {
        price_collar: Some(d("0.05")),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = rules(
        &desk,
        None,
        vec![
            limit("c1", Side::Buy, "1", "95.01"),
            limit("c2", Side::Buy, "1", "95"),
            limit("c3", Side::Buy, "1", "94.99"),
        ],
    )
    .await;
    assert_eq!(r, [none(), none(), rule("price_collar")]);
    cancel_all(&desk).await;

    // Open orders: the third is the limit; a fourth is refused.
    set(RiskLimits {
        max_open_orders: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = rules(
        &desk,
        None,
        vec![
            limit("o1", Side::Buy, "1", "90"),
            limit("o2", Side::Buy, "1", "90"),
            limit("o3", Side::Buy, "1", "90"),
            limit("o4", Side::Buy, "1", "90"),
        ],
    )
    .await;
    assert_eq!(r, [none(), none(), none(), rule("max_open_orders")]);

    // Position: 3 open buys count; 4 + 1 = 5 reaches the limit, 6 is over.
    set(RiskLimits {
        max_position: Some(d("5")),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = rules(
        &desk,
        None,
        vec![
            limit("p1", Side::Buy, "1", "90"),
            limit("p2", Side::Buy, "1", "90"),
            limit("p3", Side::Buy, "1", "90"),
        ],
    )
    .await;
    assert_eq!(r, [none(), none(), rule("max_position")]);
    cancel_all(&desk).await;

    // Submit rate: 3 per second for strategy s (wall clock: the three
    // orders go out within a second of each other).
    desk.set_limits(
        "paper",
        Some("s"),
        RiskLimits {
            max_orders_per_sec: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    set(RiskLimits::default()).await.unwrap();
    let r = rules(
        &desk,
        Some("s"),
        vec![
            limit("r1", Side::Buy, "1", "90"),
            limit("r2", Side::Buy, "1", "90"),
            limit("r3", Side::Buy, "1", "90"),
            limit("r4", Side::Buy, "1", "90"),
        ],
    )
    .await;
    assert_eq!(r, [none(), none(), none(), rule("max_orders_per_sec")]);
    // Another source is not limited by s's rate.
    assert_eq!(
        rules(&desk, None, vec![limit("r5", Side::Buy, "1", "90")]).await,
        [none()]
    );
    cancel_all(&desk).await;

    // Daily loss: buy 10 at 100, the price drops; at a loss of 99 orders
    // pass, at 100 (the limit) they stop.
    set(RiskLimits {
        daily_loss_limit: Some(d("100")),
        ..Default::default()
    })
    .await
    .unwrap();
    desk.submit("paper", None, market("dl0", Side::Buy, "10"))
        .await
        .unwrap();
    quote(&desk, 1, 90.1, 90.1, 90.1).await;
    let r = rules(&desk, None, vec![limit("dl1", Side::Buy, "1", "80")]).await;
    assert_eq!(r, [none()]);
    quote(&desk, 2, 90.0, 90.0, 90.0).await;
    let r = rules(&desk, None, vec![limit("dl2", Side::Buy, "1", "80")]).await;
    assert_eq!(r, [rule("daily_loss_limit")]);
    // Cancels still pass.
    let open = desk.open_orders("paper").await.unwrap();
    desk.cancel("paper", &open[0].id, "test").await.unwrap();
    set(RiskLimits::default()).await.unwrap();

    // Margin: equity ≈ 99,900; one more lot than equity can hold.
    let r = rules(&desk, None, vec![market("mg", Side::Buy, "1200")]).await;
    assert_eq!(r, [rule("margin")]);
}

#[tokio::test]
async fn self_trades_between_strategies_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stores(tmp.path());
    let desk = desk(&s).await;
    quote(&desk, 0, 100.0, 99.0, 101.0).await;
    let a = desk
        .submit("paper", Some("a"), limit("a1", Side::Sell, "1", "100.5"))
        .await
        .unwrap()
        .order;
    assert_eq!(a.state, OrderState::Accepted);
    // b's buy at 100.5 would trade with a's resting sell.
    let b = desk
        .submit("paper", Some("b"), limit("b1", Side::Buy, "1", "100.5"))
        .await
        .unwrap()
        .order;
    assert_eq!(b.rule.as_deref(), Some("self_trade"), "{b:?}");
    assert!(b.reason.unwrap().contains(&a.id));
    // Below a's price it does not cross; a's own buy is a's business.
    let b = desk
        .submit("paper", Some("b"), limit("b2", Side::Buy, "1", "100.4"))
        .await
        .unwrap()
        .order;
    assert_eq!(b.state, OrderState::Accepted);
    let m = desk
        .submit("paper", None, market("m", Side::Buy, "1"))
        .await
        .unwrap()
        .order;
    assert_eq!(m.rule.as_deref(), Some("self_trade"));
}

#[tokio::test]
async fn kill_switch_and_restart_restore_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (positions, halted_fills) = {
        let s = stores(tmp.path());
        let desk = desk(&s).await;
        quote(&desk, 0, 100.0, 99.0, 101.0).await;
        desk.submit("paper", Some("a"), market("a0", Side::Buy, "3"))
            .await
            .unwrap();
        desk.submit("paper", Some("a"), limit("a1", Side::Buy, "1", "95"))
            .await
            .unwrap();
        desk.submit("paper", Some("b"), limit("b1", Side::Buy, "1", "94"))
            .await
            .unwrap();
        desk.submit("paper", None, limit("m1", Side::Sell, "1", "110"))
            .await
            .unwrap();
        assert_eq!(desk.open_orders("paper").await.unwrap().len(), 3);
        // Restart with open orders: they are back and still work.
        drop(desk);
        let desk = self::desk(&s).await;
        let open = desk.open_orders("paper").await.unwrap();
        assert_eq!(open.len(), 3);
        quote(&desk, 1, 95.0, 94.5, 95.0).await;
        assert_eq!(desk.open_orders("paper").await.unwrap().len(), 2);

        let cancelled = desk.kill("paper", "operator").await.unwrap();
        assert_eq!(cancelled.len(), 2);
        assert!(desk.open_orders("paper").await.unwrap().is_empty());
        let o = desk
            .submit("paper", Some("a"), market("a2", Side::Sell, "1"))
            .await
            .unwrap()
            .order;
        assert_eq!(o.rule.as_deref(), Some("halted"));
        (
            desk.positions("paper").await.unwrap(),
            desk.fills("paper").await.unwrap(),
        )
    };
    // As after kill -9: a new desk from the same files.
    let s = stores(tmp.path());
    let desk = desk(&s).await;
    let view = desk.account("paper").await.unwrap();
    assert!(view.halted);
    assert_eq!(desk.positions("paper").await.unwrap(), positions);
    assert_eq!(desk.fills("paper").await.unwrap(), halted_fills);
    assert!(desk.open_orders("paper").await.unwrap().is_empty());
    let orders = desk.all_orders("paper").await.unwrap();
    assert_eq!(orders.len(), 5);
    assert_eq!(
        orders
            .iter()
            .filter(|o| o.state == OrderState::Cancelled)
            .count(),
        2
    );
    desk.resume("paper").await.unwrap();
    quote(&desk, 2, 95.0, 94.5, 95.0).await;
    let o = desk
        .submit("paper", Some("a"), market("a3", Side::Sell, "1"))
        .await
        .unwrap()
        .order;
    assert_eq!(o.state, OrderState::Filled);
}

#[tokio::test]
async fn a_marketable_limit_fills_at_the_quote_a_resting_one_at_its_price() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stores(tmp.path());
    let desk = desk(&s).await;
    quote(&desk, 0, 100.0, 99.0, 100.0).await;
    let o = desk
        .submit("paper", None, limit("mk", Side::Buy, "1", "102"))
        .await
        .unwrap()
        .order;
    assert_eq!(o.avg_fill_price, Some(d("100")), "{o:?}");
    let o = desk
        .submit("paper", None, limit("rest", Side::Buy, "1", "98"))
        .await
        .unwrap()
        .order;
    assert!(o.rested && o.state == OrderState::Accepted, "{o:?}");
    quote(&desk, 1, 97.0, 96.0, 97.0).await;
    let o = desk.order("paper", &o.id).await.unwrap();
    assert_eq!(o.avg_fill_price, Some(d("98")), "{o:?}");
}
