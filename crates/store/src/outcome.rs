//! The byte layout of a run's outcome, one for both backends: its `i32`
//! values, 4 big-endian bytes each (Postgres `bytea`, SQLite `BLOB`).
//!
//! Big-endian because it is what Postgres' own `int4send` writes, so the
//! `run_outcomes` view can turn the bytes back into an `int4[]` in SQL
//! (`migrations/postgres/20261124000001_run_outcome_bytes.sql` says why the
//! column is bytes and not an array).

use crate::{Error, Result};

/// Bytes per value.
pub(crate) const VALUE_BYTES: usize = 4;

/// Appends the layout of `values` to `out`.
pub(crate) fn encode(values: &[i32], out: &mut Vec<u8>) {
    out.reserve(values.len() * VALUE_BYTES);
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Decodes an outcome's bytes into `out`, reusing its allocation: the
/// verifier reads every run's row.
pub(crate) fn decode(bytes: &[u8], out: &mut Vec<i32>) -> Result<()> {
    if !bytes.len().is_multiple_of(VALUE_BYTES) {
        return Err(Error::Corrupt(format!(
            "outcome of {} bytes, not a whole number of 4-byte values",
            bytes.len()
        )));
    }
    out.clear();
    out.extend(
        bytes
            .chunks_exact(VALUE_BYTES)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_big_endian() {
        let values = [0, -1, i32::MAX, i32::MIN, 42];
        let mut bytes = Vec::new();
        encode(&values, &mut bytes);
        assert_eq!(&bytes[4..8], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&bytes[8..12], &[0x7f, 0xff, 0xff, 0xff]);
        let mut back = vec![7];
        decode(&bytes, &mut back).unwrap();
        assert_eq!(back, values);
        decode(&[], &mut back).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn a_ragged_outcome_is_corrupt_not_a_panic() {
        let mut out = Vec::new();
        for len in [1, 2, 3, 5, 7] {
            assert!(
                matches!(decode(&vec![0; len], &mut out), Err(Error::Corrupt(_))),
                "{len}"
            );
        }
    }
}
