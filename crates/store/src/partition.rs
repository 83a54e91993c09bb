//! The aggregator's partitions: where a batch's chunk results go, and the
//! epoch that fences a partition's owner.
//!
//! A batch's partition is a stable hash of its id ([`of`]) modulo the
//! partition count, which is fixed when the database is migrated
//! ([`DEFAULT_PARTITIONS`] unless asked otherwise) and stored with it: every
//! process reads it from there, so every publisher of results (executor,
//! sweeper) and every aggregator agree. The hash must never change between
//! versions, or results of open batches would go where no state waits for
//! them; a golden-value test pins it.

use uuid::Uuid;

use crate::{Error, Result};

/// Partitions of a new database.
pub const DEFAULT_PARTITIONS: u16 = 16;

/// The migration that brought partitions (its version in `_sqlx_migrations`).
pub(crate) const MIGRATION: i64 = 20261201000011;

/// Most partitions a database may have (queue and directory names carry
/// two digits: `p00` … `p99`).
pub const MAX_PARTITIONS: u16 = 100;

/// A partition's ownership at one moment: effects of its owner outside its
/// own disk count only while the partition's epoch is still `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fence {
    pub partition: u16,
    pub epoch: i64,
}

/// The partition of `batch` among `count` partitions: FNV-1a (64 bit) over
/// the id's 16 bytes, modulo `count`.
pub fn of(batch: Uuid, count: u16) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = batch
        .as_bytes()
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME));
    (hash % u64::from(count.max(1))) as u16
}

/// The partition count a database is to have, from the partition rows it
/// `has`, the count `wanted` (`PARTITIONS`) and whether it holds batches:
/// the one decision behind both stores' `init_partitions`, which then
/// only (re)create the rows when the count differs from `has`.
pub(crate) fn settle_count(has: u16, wanted: Option<u16>, has_batches: bool) -> Result<u16> {
    if let Some(n) = wanted
        && !(1..=MAX_PARTITIONS).contains(&n)
    {
        return Err(Error::config(format!(
            "partitions must be 1 to {MAX_PARTITIONS}, got {n}"
        )));
    }
    match (has, wanted) {
        (0, wanted) => Ok(wanted.unwrap_or(DEFAULT_PARTITIONS)),
        (has, None) => Ok(has),
        (has, Some(n)) if n == has => Ok(has),
        // A fresh database may still be repartitioned.
        (_, Some(n)) if !has_batches => Ok(n),
        (has, Some(n)) => Err(Error::config(format!(
            "the database has {has} partitions, fixed when it was first migrated; \
             {n} asked for (see \"Changing the partition count\" in docs/operations.md)"
        ))),
    }
}

/// The count of `rows` partition rows, as read by a store; an error before
/// the database has any.
pub(crate) fn count_of_rows(rows: i64) -> Result<u16> {
    if rows == 0 {
        return Err(Error::config(
            "the database has no partitions yet: run `batchline migrate`",
        ));
    }
    Ok(u16::try_from(rows).unwrap_or(MAX_PARTITIONS))
}

/// A partition's name in queue and directory names: `p07`.
pub fn name(partition: u16) -> String {
    format!("p{partition:02}")
}

/// The partition a [`name`] stands for (`p07` → 7).
pub fn from_name(name: &str) -> Option<u16> {
    let digits = name.strip_prefix('p')?;
    if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_fixed_once_batches_exist() {
        assert_eq!(settle_count(0, None, false).unwrap(), DEFAULT_PARTITIONS);
        assert_eq!(settle_count(0, Some(4), true).unwrap(), 4);
        assert_eq!(settle_count(8, None, true).unwrap(), 8);
        assert_eq!(settle_count(8, Some(8), true).unwrap(), 8);
        assert_eq!(settle_count(16, Some(4), false).unwrap(), 4);
        let refused = settle_count(16, Some(4), true).unwrap_err().to_string();
        assert!(
            refused.contains("16 partitions") && refused.contains("4 asked for"),
            "{refused}"
        );
        for bad in [0, MAX_PARTITIONS + 1] {
            assert!(settle_count(0, Some(bad), false).is_err(), "{bad}");
        }
        assert!(count_of_rows(0).is_err());
        assert_eq!(count_of_rows(12).unwrap(), 12);
    }

    #[test]
    fn names_read_back() {
        for p in [0, 7, 15, 99] {
            assert_eq!(from_name(&name(p)), Some(p));
        }
        for bad in ["p7", "p100", "q07", "p0a", "LOCK"] {
            assert_eq!(from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_hash_never_changes() {
        // Stored batches and queued results depend on these values.
        let ids = [
            Uuid::nil(),
            Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            Uuid::from_u128(u128::MAX),
        ];
        let got: Vec<u16> = ids.iter().map(|id| of(*id, 16)).collect();
        assert_eq!(got, [5, 5, 5]);
        let got: Vec<u16> = ids.iter().map(|id| of(*id, 7)).collect();
        assert_eq!(got, [0, 4, 5]);
        let got: Vec<u16> = (0..10).map(|i| of(Uuid::from_u128(i), 16)).collect();
        assert_eq!(got, [5, 2, 15, 12, 9, 6, 3, 0, 13, 10]);
    }

    #[test]
    fn batches_spread_over_every_partition() {
        let mut seen = [0u32; 16];
        for i in 0..16_000u128 {
            seen[usize::from(of(Uuid::from_u128(i * 0x9e37_79b9_7f4a_7c15), 16))] += 1;
        }
        assert!(seen.iter().all(|n| (700..1300).contains(n)), "{seen:?}");
        assert_eq!(of(Uuid::new_v4(), 1), 0);
        assert_eq!(name(7), "p07");
    }
}
