//! Counters of families whose label sets are few and known in advance
//! (cache lookups, rate-limit decisions). `Family::get_or_create` hashes
//! the label set and takes the family's lock at every call; these are
//! looked up once, at first use, and then incremented directly. A series
//! still appears in the exposition only once it has been counted.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::hash::Hash;
use std::sync::OnceLock;

/// `N` slots of one family, each standing for one label set.
pub struct FixedCounters<const N: usize>([OnceLock<Counter>; N]);

impl<const N: usize> Default for FixedCounters<N> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| OnceLock::new()))
    }
}

/// The slot of the label set (`row`, `column`) in a table of `rows` by
/// `columns`; past the end for a label outside them.
pub fn slot(rows: &[&str], row: &str, columns: &[&str], column: &str) -> usize {
    let r = rows.iter().position(|x| *x == row);
    let c = columns.iter().position(|x| *x == column);
    r.zip(c).map_or(usize::MAX, |(r, c)| r * columns.len() + c)
}

impl<const N: usize> FixedCounters<N> {
    /// Adds one to the series `labels()` of `family`, held in `slot`. The
    /// caller gives each label set a slot of its own; a slot past the end
    /// goes to the family directly.
    pub fn inc<L>(&self, slot: usize, family: &Family<L, Counter>, labels: impl FnOnce() -> L)
    where
        L: Clone + Hash + Eq,
    {
        match self.0.get(slot) {
            Some(cell) => {
                cell.get_or_init(|| family.get_or_create(&labels()).clone())
                    .inc();
            }
            None => {
                family.get_or_create(&labels()).inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{slot, FixedCounters};
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    #[test]
    fn slots_count_into_the_family() {
        let family = Family::<Vec<(String, String)>, Counter>::default();
        let fixed = FixedCounters::<2>::default();
        let labels = |v: &'static str| move || vec![("result".to_owned(), v.to_owned())];
        fixed.inc(0, &family, labels("hit"));
        fixed.inc(0, &family, labels("hit"));
        fixed.inc(1, &family, labels("miss"));
        fixed.inc(7, &family, labels("other"));
        assert_eq!(family.get_or_create(&labels("hit")()).get(), 2);
        assert_eq!(family.get_or_create(&labels("miss")()).get(), 1);
        assert_eq!(family.get_or_create(&labels("other")()).get(), 1);
        assert_eq!(slot(&["a", "b"], "b", &["x", "y", "z"], "z"), 5);
        assert_eq!(slot(&["a", "b"], "a", &["x", "y", "z"], "y"), 1);
        assert_eq!(slot(&["a"], "c", &["x"], "x"), usize::MAX);
        assert_eq!(slot(&["a"], "a", &["x"], "w"), usize::MAX);
    }
}
