//! Encodes run rows in the text format of `COPY run_results (batch_id,
//! run_index, outcome) FROM STDIN`: `uuid\trun_index\t{v1,v2,…}\n`.
//!
//! Rows are appended to one reusable buffer with hand-rolled integer
//! formatting, so encoding a chunk allocates nothing per row.

use crate::{RunRows, Uuid};

/// Appends the COPY text rows of `rows` (run `first_run + i` for each `i` in
/// `range`) to `buf`.
pub(crate) fn encode_rows(
    batch_id: &[u8; 36],
    rows: &RunRows,
    range: std::ops::Range<usize>,
    buf: &mut Vec<u8>,
) {
    for i in range {
        buf.extend_from_slice(batch_id);
        buf.push(b'\t');
        push_int(buf, rows.first_run + i as i64);
        buf.extend_from_slice(b"\t{");
        for (k, v) in rows.row(i).iter().enumerate() {
            if k > 0 {
                buf.push(b',');
            }
            push_int(buf, i64::from(*v));
        }
        buf.extend_from_slice(b"}\n");
    }
}

/// The batch id as COPY text (lower-case hyphenated).
pub(crate) fn uuid_text(id: Uuid) -> [u8; 36] {
    let mut out = [0u8; 36];
    id.hyphenated().encode_lower(&mut out);
    out
}

/// Decimal text of `v`, written without going through `fmt`.
fn push_int(buf: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_match_display() {
        for v in [
            0,
            1,
            -1,
            9,
            10,
            12345,
            -987654,
            i64::MAX,
            i64::MIN,
            i64::from(i32::MIN),
        ] {
            let mut buf = Vec::new();
            push_int(&mut buf, v);
            assert_eq!(String::from_utf8(buf).unwrap(), v.to_string());
        }
    }

    #[test]
    fn rows_are_tab_separated_with_array_literals() {
        let id = Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        let rows = RunRows {
            first_run: 1000,
            width: 3,
            values: vec![1, -2, 3, 40, 0, i32::MAX],
        };
        let mut buf = Vec::new();
        encode_rows(&uuid_text(id), &rows, 0..2, &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "67e55044-10b1-426f-9247-bb680e5fe0c8\t1000\t{1,-2,3}\n\
             67e55044-10b1-426f-9247-bb680e5fe0c8\t1001\t{40,0,2147483647}\n"
        );
    }
}
