//! The `sum` workload: the numeric-chunks drill. Run i of a batch is a
//! value in 0..1000 hashed from (seed, i); near-zero compute, so a `sum`
//! batch measures the pipeline rather than the simulation.

use crate::rng::splitmix64;

/// Largest value a `sum` run produces.
pub const MAX_VALUE: i32 = 999;

/// The value of run `run_index` of a batch seeded `seed`.
pub fn value(seed: u64, run_index: u64) -> i32 {
    (splitmix64(splitmix64(seed) ^ run_index) % (MAX_VALUE as u64 + 1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_pinned_and_in_range() {
        // Stored batches depend on these never changing.
        assert_eq!([value(0, 0), value(0, 1), value(42, 7)], PINNED);
        assert!(
            (0..10_000)
                .map(|i| value(9, i))
                .all(|v| (0..=MAX_VALUE).contains(&v))
        );
    }

    const PINNED: [i32; 3] = [55, 430, 696];

    #[test]
    fn values_spread_over_the_range() {
        let distinct: std::collections::HashSet<i32> = (0..10_000).map(|i| value(3, i)).collect();
        assert!(distinct.len() > 990);
    }
}
