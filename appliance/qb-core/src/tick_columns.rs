//! Ticks in columns: how a batch travels from a parser (live ingest) to a
//! tick store, and from the store's report to the live feed.
//!
//! A [`Tick`] row is 168 bytes plus an allocation for its symbol; here a
//! tick costs 28 bytes (symbol id, time, seq, price, size) and 8 more for
//! each optional field the batch carries at all. A 48 MB CSV body of
//! short rows is about 1.4 million ticks: 56 MB in columns against 280 MB
//! as rows.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use crate::market::{Nanos, Tick, TickBatch};

/// The optional fields of a tick, in [`Tick`]'s order; the index of each
/// is its `k` in [`TickColumns::optional`].
pub const OPTIONAL_FIELDS: [&str; 7] = [
    "volume",
    "turnover",
    "open_interest",
    "bid",
    "bid_size",
    "ask",
    "ask_size",
];

/// A batch of ticks, one vector per field, symbols as ids into the batch's
/// own list of names.
///
/// Absent optional values are held as NaN: every input path refuses
/// non-finite numbers (ingest, imports, copies from another store), so NaN
/// cannot be a value here; [`TickColumns::push`] turns a non-finite
/// optional value into "absent" rather than store it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickColumns {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    symbol: Vec<u32>,
    ts: Vec<Nanos>,
    seq: Vec<i32>,
    price: Vec<f64>,
    size: Vec<f64>,
    /// Empty while no tick of the batch had the field; else one value per
    /// tick, NaN where absent.
    optional: [Vec<f64>; 7],
}

impl TickColumns {
    /// Room for `rows` ticks in the required columns, reserved once.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            symbol: Vec::with_capacity(rows),
            ts: Vec::with_capacity(rows),
            seq: Vec::with_capacity(rows),
            price: Vec::with_capacity(rows),
            size: Vec::with_capacity(rows),
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends a tick with `seq` 0 (see [`TickColumns::number`]); the
    /// optional fields in [`OPTIONAL_FIELDS`] order.
    pub fn push(
        &mut self,
        symbol: &str,
        ts: Nanos,
        price: f64,
        size: f64,
        optional: [Option<f64>; 7],
    ) {
        self.push_numbered(symbol, ts, 0, price, size, optional);
    }

    fn push_numbered(
        &mut self,
        symbol: &str,
        ts: Nanos,
        seq: i32,
        price: f64,
        size: f64,
        optional: [Option<f64>; 7],
    ) {
        let id = match self.ids.get(symbol) {
            Some(&id) => id,
            None => {
                let id = self.names.len() as u32;
                self.names.push(symbol.to_string());
                self.ids.insert(symbol.to_string(), id);
                id
            }
        };
        let row = self.ts.len();
        self.symbol.push(id);
        self.ts.push(ts);
        self.seq.push(seq);
        self.price.push(price);
        self.size.push(size);
        for (column, value) in self.optional.iter_mut().zip(optional) {
            match value.filter(|v| v.is_finite()) {
                Some(v) => {
                    if column.is_empty() {
                        column.reserve_exact(self.ts.capacity());
                        column.resize(row, f64::NAN);
                    }
                    column.push(v);
                }
                None if !column.is_empty() => column.push(f64::NAN),
                None => {}
            }
        }
    }

    /// The distinct symbols pushed, in the order first seen (after
    /// [`TickColumns::keep`], possibly some no tick has any more).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The symbol of tick `i`.
    pub fn symbol(&self, i: usize) -> &str {
        &self.names[self.symbol[i] as usize]
    }

    /// The symbol id (into [`TickColumns::names`]) of every tick.
    pub fn symbol_ids(&self) -> &[u32] {
        &self.symbol
    }

    pub fn ts(&self) -> &[Nanos] {
        &self.ts
    }

    pub fn seq(&self) -> &[i32] {
        &self.seq
    }

    pub fn price(&self) -> &[f64] {
        &self.price
    }

    pub fn size(&self) -> &[f64] {
        &self.size
    }

    /// Optional field `k` ([`OPTIONAL_FIELDS`]) of tick `i`.
    pub fn optional(&self, k: usize, i: usize) -> Option<f64> {
        self.optional[k].get(i).copied().filter(|v| !v.is_nan())
    }

    /// Optional field `k` of the ticks in `rows`, `None` where absent.
    pub fn optional_values(
        &self,
        k: usize,
        rows: Range<usize>,
    ) -> impl Iterator<Item = Option<f64>> + '_ {
        rows.map(move |i| self.optional(k, i))
    }

    /// Tick `i` as a row.
    pub fn tick(&self, i: usize) -> Tick {
        let o = |k| self.optional(k, i);
        Tick {
            symbol: self.symbol(i).to_string(),
            ts: self.ts[i],
            seq: self.seq[i],
            price: self.price[i],
            size: self.size[i],
            volume: o(0),
            turnover: o(1),
            open_interest: o(2),
            bid: o(3),
            bid_size: o(4),
            ask: o(5),
            ask_size: o(6),
        }
    }

    /// The ticks in `rows` as rows (a store that writes rows converts a
    /// slice at a time, never the whole batch).
    pub fn ticks(&self, rows: Range<usize>) -> impl Iterator<Item = Tick> + '_ {
        rows.map(|i| self.tick(i))
    }

    /// Every tick as a row.
    pub fn to_vec(&self) -> Vec<Tick> {
        self.ticks(0..self.len()).collect()
    }

    /// The earliest and latest time in the batch.
    pub fn ts_range(&self) -> Option<(Nanos, Nanos)> {
        let lo = *self.ts.iter().min()?;
        let hi = *self.ts.iter().max()?;
        Some((lo, hi))
    }

    /// Numbers ticks that share `(symbol, ts)`, in batch order, from 0:
    /// how every tick store numbers an append. A batch whose ticks come in
    /// time order per symbol (a feed) is numbered in one pass with one
    /// counter per symbol; any other with a map of its `(symbol, ts)`s.
    pub fn number(&mut self) {
        let mut last: Vec<(Nanos, i32)> = vec![(Nanos::MIN, -1); self.names.len()];
        for i in 0..self.len() {
            let (ts, id) = (self.ts[i], self.symbol[i] as usize);
            let (prev, n) = last[id];
            let seq = match ts.cmp(&prev) {
                std::cmp::Ordering::Equal => n + 1,
                std::cmp::Ordering::Greater => 0,
                std::cmp::Ordering::Less => return self.number_unordered(),
            };
            last[id] = (ts, seq);
            self.seq[i] = seq;
        }
    }

    fn number_unordered(&mut self) {
        let mut seen: HashMap<(u32, Nanos), i32> = HashMap::new();
        for i in 0..self.len() {
            let n = seen.entry((self.symbol[i], self.ts[i])).or_insert(0);
            self.seq[i] = *n;
            *n += 1;
        }
    }

    /// The positions (ascending) of the ticks whose `(symbol, ts, seq)` is
    /// in `identities` when `listed`, or is not when `!listed`.
    pub fn positions(&self, identities: &HashSet<(String, Nanos, i32)>, listed: bool) -> Vec<u32> {
        let by_id: HashSet<(u32, Nanos, i32)> = identities
            .iter()
            .filter_map(|(symbol, ts, seq)| Some((*self.ids.get(symbol)?, *ts, *seq)))
            .collect();
        (0..self.len())
            .filter(|&i| by_id.contains(&(self.symbol[i], self.ts[i], self.seq[i])) == listed)
            .map(|i| i as u32)
            .collect()
    }

    /// Keeps the ticks at `positions` (ascending), in order, in place.
    pub fn keep(&mut self, positions: &[u32]) {
        if positions.len() == self.len() {
            return;
        }
        fn compact<T: Copy>(v: &mut Vec<T>, positions: &[u32]) {
            if v.is_empty() {
                return;
            }
            for (to, &from) in positions.iter().enumerate() {
                v[to] = v[from as usize];
            }
            v.truncate(positions.len());
            v.shrink_to_fit();
        }
        compact(&mut self.symbol, positions);
        compact(&mut self.ts, positions);
        compact(&mut self.seq, positions);
        compact(&mut self.price, positions);
        compact(&mut self.size, positions);
        for column in &mut self.optional {
            compact(column, positions);
        }
    }

    /// The ticks in `rows` grouped per symbol (in symbol order), each in
    /// batch order: the events of [`crate::market::TICKS_TOPIC`].
    pub fn group(&self, rows: Range<usize>) -> Vec<TickBatch> {
        let mut by: std::collections::BTreeMap<&str, TickBatch> = Default::default();
        for i in rows {
            let symbol = self.symbol(i);
            let b = by.entry(symbol).or_insert_with(|| TickBatch {
                symbol: symbol.to_string(),
                ts: Vec::new(),
                price: Vec::new(),
                size: Vec::new(),
                bid: Vec::new(),
                ask: Vec::new(),
            });
            b.ts.push(self.ts[i]);
            b.price.push(self.price[i]);
            b.size.push(self.size[i]);
            b.bid.push(self.optional(3, i));
            b.ask.push(self.optional(5, i));
        }
        by.into_values().collect()
    }
}

impl FromIterator<Tick> for TickColumns {
    fn from_iter<I: IntoIterator<Item = Tick>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut out = Self::with_capacity(iter.size_hint().0);
        for t in iter {
            out.push_numbered(&t.symbol, t.ts, t.seq, t.price, t.size, t.optional());
        }
        out
    }
}

impl From<Vec<Tick>> for TickColumns {
    fn from(ticks: Vec<Tick>) -> Self {
        ticks.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(symbol: &str, ts: Nanos, price: f64, bid: Option<f64>) -> Tick {
        Tick {
            symbol: symbol.into(),
            ts,
            seq: 0,
            price,
            size: 1.0,
            volume: None,
            turnover: None,
            open_interest: None,
            bid,
            bid_size: None,
            ask: None,
            ask_size: None,
        }
    }

    #[test]
    fn rows_go_in_and_come_out_the_same() {
        let rows = vec![
            t("a", 5, 1.0, None),
            t("b", 5, 2.0, Some(1.5)),
            t("a", 6, 3.0, None),
        ];
        let c = TickColumns::from(rows.clone());
        assert_eq!(c.len(), 3);
        assert_eq!(c.names(), ["a", "b"]);
        assert_eq!(c.to_vec(), rows);
        assert_eq!(c.ts_range(), Some((5, 6)));
        // The optional column exists from the first value on, absent
        // before and after it.
        assert_eq!(c.optional(3, 0), None);
        assert_eq!(c.optional(3, 1), Some(1.5));
        assert_eq!(c.optional(3, 2), None);
    }

    /// The one-pass numbering of time-ordered batches and the map for any
    /// other order give what the rule says: the n-th tick of a
    /// `(symbol, ts)` in batch order gets n.
    #[test]
    fn numbering_follows_batch_order_in_and_out_of_time_order() {
        let expected = |rows: &[Tick]| -> Vec<i32> {
            rows.iter()
                .enumerate()
                .map(|(i, r)| {
                    rows[..i]
                        .iter()
                        .filter(|p| p.symbol == r.symbol && p.ts == r.ts)
                        .count() as i32
                })
                .collect()
        };
        let ordered = vec![
            t("a", 1, 1.0, None),
            t("b", 1, 1.0, None),
            t("a", 1, 1.0, None),
            t("a", 2, 1.0, None),
            t("b", 1, 1.0, None),
            t("a", 2, 1.0, None),
        ];
        let mut shuffled = ordered.clone();
        shuffled.push(t("a", 1, 1.0, None));
        shuffled.push(t("b", 0, 1.0, None));
        for rows in [ordered, shuffled] {
            let mut c = TickColumns::from(rows.clone());
            c.number();
            assert_eq!(c.seq(), expected(&rows), "{rows:?}");
        }
    }

    #[test]
    fn keep_selects_in_place_and_group_splits_per_symbol() {
        let mut c = TickColumns::from(vec![
            t("b", 1, 1.0, Some(0.5)),
            t("a", 2, 2.0, None),
            t("b", 3, 3.0, None),
            t("a", 4, 4.0, Some(3.5)),
        ]);
        let listed: HashSet<(String, Nanos, i32)> =
            [("a".to_string(), 2, 0), ("zz".to_string(), 1, 0)].into();
        assert_eq!(c.positions(&listed, true), [1]);
        assert_eq!(c.positions(&listed, false), [0, 2, 3]);
        c.keep(&[1, 2, 3]);
        assert_eq!(
            c.to_vec(),
            vec![
                t("a", 2, 2.0, None),
                t("b", 3, 3.0, None),
                t("a", 4, 4.0, Some(3.5))
            ]
        );
        let groups = c.group(0..3);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].symbol.as_str(), groups[0].ts.clone()),
            ("a", vec![2, 4])
        );
        assert_eq!(groups[0].bid, vec![None, Some(3.5)]);
        assert_eq!(groups[1].price, vec![3.0]);
    }

    #[test]
    fn a_non_finite_optional_value_is_absent() {
        let mut c = TickColumns::default();
        c.push(
            "x",
            1,
            1.0,
            1.0,
            [Some(f64::NAN), None, None, None, None, None, None],
        );
        assert_eq!(c.tick(0).volume, None);
    }
}
