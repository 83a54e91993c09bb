//! Checks that a chunk's per-run rows are exactly the runs the chunk owns,
//! before either backend writes them: a short, long or shifted set of rows
//! would make the batch's run index silently wrong.

use crate::{Error, Result, RunRows};

/// `Ok` when `rows` holds runs `chunk * chunk_size ..` up to the chunk's end
/// (the last chunk may be short), each `rows.width` values wide.
pub(crate) fn check_rows(runs: i64, chunk_size: i32, chunk: i32, rows: &RunRows) -> Result<()> {
    let first = i64::from(chunk) * i64::from(chunk_size);
    let expected = (runs - first).clamp(0, i64::from(chunk_size));
    if rows.width == 0 || !rows.values.len().is_multiple_of(rows.width) {
        return Err(Error::Invalid(format!(
            "chunk {chunk}: {} values do not split into rows of width {}",
            rows.values.len(),
            rows.width
        )));
    }
    let got = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    if rows.first_run != first || got != expected {
        return Err(Error::Invalid(format!(
            "chunk {chunk}: rows cover runs {}..{} but the chunk owns runs {first}..{}",
            rows.first_run,
            rows.first_run.saturating_add(got),
            first + expected
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(first_run: i64, n: usize, width: usize) -> RunRows {
        RunRows {
            first_run,
            width,
            values: vec![1; n * width],
        }
    }

    #[test]
    fn accepts_exact_ranges_including_a_short_last_chunk() {
        assert!(check_rows(25, 10, 0, &rows(0, 10, 3)).is_ok());
        assert!(check_rows(25, 10, 2, &rows(20, 5, 3)).is_ok());
    }

    #[test]
    fn refuses_wrong_start_count_or_width() {
        assert!(matches!(
            check_rows(25, 10, 1, &rows(0, 10, 3)),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            check_rows(25, 10, 2, &rows(20, 10, 3)),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            check_rows(25, 10, 0, &rows(0, 9, 3)),
            Err(Error::Invalid(_))
        ));
        let ragged = RunRows {
            first_run: 0,
            width: 3,
            values: vec![1; 31],
        };
        assert!(matches!(
            check_rows(25, 10, 0, &ragged),
            Err(Error::Invalid(_))
        ));
        let zero_width = RunRows {
            first_run: 0,
            width: 0,
            values: vec![],
        };
        assert!(matches!(
            check_rows(25, 10, 0, &zero_width),
            Err(Error::Invalid(_))
        ));
    }
}
