//! The line format shared by key logs and the tombstone log:
//! `<body>,<crc>\n`, where `<body>` is one CSV record written by the `csv`
//! crate (for key logs `msg_id,<row fields…>`; for tombstones the key) and
//! `<crc>` is the CRC32 (IEEE, `crc32fast`) of the body's bytes as 8
//! lowercase hex digits. The body never holds a raw line break, so a line
//! is a record and damage stays within the lines it touches.

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use csv::{ByteRecord, ReaderBuilder, Terminator, WriterBuilder};
use serde::Serialize;

use crate::error::{Error, Result};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `body` followed by `,<crc>\n` to `out`.
pub(crate) fn push_crc_line(out: &mut Vec<u8>, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(body);
    finish_line(out, start);
}

/// Encodes key-log lines. Keeps one `csv` writer for all rows (building
/// one per row costs allocations on the hot path).
#[derive(Debug)]
pub(crate) struct RowEncoder {
    csv: csv::Writer<Sink>,
}

/// Where the csv writer puts a record. A `Mutex` only because
/// `csv::Writer` hands out nothing but `&Sink`; it is never contended.
#[derive(Debug, Default)]
struct Sink {
    buf: Mutex<Vec<u8>>,
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Default for RowEncoder {
    fn default() -> Self {
        let csv = WriterBuilder::new()
            .has_headers(false)
            .flexible(true)
            .terminator(Terminator::Any(b'\n'))
            .buffer_capacity(1024)
            .from_writer(Sink::default());
        RowEncoder { csv }
    }
}

impl RowEncoder {
    /// Appends one key-log line for `msg_id` and `row` to `out`. On error
    /// `out` is left as it was.
    pub(crate) fn encode<R: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        msg_id: &str,
        row: &R,
    ) -> Result<()> {
        let start = out.len();
        let written = self.write_record(out, msg_id, row);
        if let Err(e) = written {
            out.truncate(start);
            // A record that failed half way must not leak into the next.
            *self = RowEncoder::default();
            return Err(e);
        }
        // The csv writer ended the record with '\n'; the CRC goes before it.
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        if out[start..].iter().any(|&b| b == b'\n' || b == b'\r') {
            out.truncate(start);
            return Err(Error::InvalidRow {
                reason: "a field contains a line break".to_owned(),
            });
        }
        finish_line(out, start);
        Ok(())
    }

    fn write_record<R: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        msg_id: &str,
        row: &R,
    ) -> Result<()> {
        self.csv.write_field(msg_id).map_err(Error::Encode)?;
        self.csv.serialize(row).map_err(Error::Encode)?;
        self.csv.flush().map_err(|e| Error::Encode(e.into()))?;
        let mut buf = self
            .csv
            .get_ref()
            .buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        out.extend_from_slice(&buf);
        buf.clear();
        Ok(())
    }
}

/// Appends one key-log line for `msg_id` and `row` to `out` (one-off; the
/// manager keeps a [`RowEncoder`]).
#[cfg(test)]
pub(crate) fn encode_row<R: Serialize>(out: &mut Vec<u8>, msg_id: &str, row: &R) -> Result<()> {
    RowEncoder::default().encode(out, msg_id, row)
}

/// Ends the line that starts at `start` with `,<crc of body>\n`.
fn finish_line(out: &mut Vec<u8>, start: usize) {
    let crc = crc32fast::hash(&out[start..]);
    out.push(b',');
    for shift in (0..8).rev() {
        out.push(HEX[((crc >> (shift * 4)) & 0xf) as usize]);
    }
    out.push(b'\n');
}

/// The body of a line (without its `\n`) if its CRC checks out.
pub(crate) fn checked_body(line: &[u8]) -> Option<&[u8]> {
    let comma = line.iter().rposition(|&b| b == b',')?;
    let (body, crc) = (&line[..comma], &line[comma + 1..]);
    // An empty body would have CRC 0 and no record: never written by us.
    if body.is_empty() || crc.len() != 8 {
        return None;
    }
    let mut stored = 0u32;
    for &b in crc {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        stored = (stored << 4) | u32::from(digit);
    }
    (crc32fast::hash(body) == stored).then_some(body)
}

/// Parses CRC-checked bodies, one CSV record each, in a single reader pass
/// (a reader per line would cost more than the rest of a rebuild).
/// `each(i, record)` is called for `bodies[i]`. A failure names the index
/// of the body it belongs to.
pub(crate) fn parse_bodies(
    bodies: &[&[u8]],
    mut each: impl FnMut(usize, &ByteRecord) -> Result<(), csv::Error>,
) -> Result<(), (usize, csv::Error)> {
    let mut joined = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum());
    let mut ends = Vec::with_capacity(bodies.len());
    for body in bodies {
        joined.extend_from_slice(body);
        joined.push(b'\n');
        ends.push(joined.len() as u64);
    }
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(Terminator::Any(b'\n'))
        .from_reader(joined.as_slice());
    let mut record = ByteRecord::new();
    for (i, &end) in ends.iter().enumerate() {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Err((i, misaligned())),
            Err(e) => return Err((i, e)),
        }
        // A body with an unbalanced quote would swallow the next line: each
        // record must end exactly where its line ends.
        if reader.position().byte() != end {
            return Err((i, misaligned()));
        }
        each(i, &record).map_err(|e| (i, e))?;
    }
    Ok(())
}

fn misaligned() -> csv::Error {
    csv::Error::from(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "line is not exactly one CSV record",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        n: i64,
        text: String,
    }

    fn decode(line: &[u8]) -> (String, Row) {
        let body = checked_body(line.strip_suffix(b"\n").unwrap()).expect("crc ok");
        let mut out = None;
        parse_bodies(&[body], |_, rec| {
            let msg_id = String::from_utf8(rec[0].to_vec()).unwrap();
            let rest: ByteRecord = rec.iter().skip(1).collect();
            out = Some((msg_id, rest.deserialize(None)?));
            Ok(())
        })
        .unwrap();
        out.unwrap()
    }

    #[test]
    fn commas_and_quotes_round_trip_and_the_crc_covers_the_msg_id() {
        let row = Row {
            n: -7,
            text: "a, \"b\" ,c".to_owned(),
        };
        let mut out = Vec::new();
        encode_row(&mut out, "m,1", &row).unwrap();
        let body = &out[..out.len() - 10];
        assert_eq!(body, b"\"m,1\",-7,\"a, \"\"b\"\" ,c\"".as_slice());
        assert_eq!(decode(&out), ("m,1".to_owned(), row));

        // Changing the msg_id alone breaks the CRC.
        let mut forged = out.clone();
        forged[2] = b'2';
        assert!(checked_body(&forged[..forged.len() - 1]).is_none());
    }

    #[test]
    fn plain_rows_look_like_plain_csv() {
        let mut out = Vec::new();
        encode_row(
            &mut out,
            "m1",
            &Row {
                n: 3,
                text: "x".into(),
            },
        )
        .unwrap();
        let crc = crc32fast::hash(b"m1,3,x");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("m1,3,x,{crc:08x}\n")
        );
    }

    #[test]
    fn line_breaks_in_fields_are_refused_and_leave_the_buffer_alone() {
        let mut out = b"keep".to_vec();
        let err = encode_row(
            &mut out,
            "m",
            &Row {
                n: 1,
                text: "two\nlines".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidRow { .. }), "{err}");
        assert_eq!(out, b"keep");
    }

    #[test]
    fn rows_the_csv_crate_cannot_flatten_are_errors() {
        let mut out = Vec::new();
        let map = std::collections::BTreeMap::from([("a", 1)]);
        match encode_row(&mut out, "m", &map) {
            Err(Error::Encode(_)) => assert!(out.is_empty()),
            other => panic!("expected an encode error, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_record_does_not_leak_into_the_next_one() {
        let mut enc = RowEncoder::default();
        let mut out = Vec::new();
        let map = std::collections::BTreeMap::from([("a", 1)]);
        assert!(enc.encode(&mut out, "m1", &map).is_err());
        let two_lines = Row {
            n: 1,
            text: "a\nb".into(),
        };
        assert!(enc.encode(&mut out, "m2", &two_lines).is_err());
        enc.encode(
            &mut out,
            "m3",
            &Row {
                n: 3,
                text: "x".into(),
            },
        )
        .unwrap();
        let crc = crc32fast::hash(b"m3,3,x");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("m3,3,x,{crc:08x}\n")
        );
    }

    #[test]
    fn bad_crcs_and_malformed_suffixes_are_rejected() {
        let mut line = Vec::new();
        push_crc_line(&mut line, b"key-1");
        line.pop();
        assert_eq!(checked_body(&line), Some(b"key-1".as_slice()));
        for bad in [
            b"key-1".as_slice(),
            b"key-1,".as_slice(),
            b",00000000".as_slice(),
            b"key-1,0000000".as_slice(),
            b"key-1,GGGGGGGG".as_slice(),
        ] {
            assert_eq!(
                checked_body(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let upper = format!("key-1,{:08X}", crc32fast::hash(b"key-1"));
        assert_eq!(checked_body(upper.as_bytes()), None);
    }

    #[test]
    fn a_body_with_an_unbalanced_quote_is_a_parse_error_not_a_merge() {
        let bodies: [&[u8]; 3] = [b"a,1", b"\"b,2", b"c,3"];
        let mut seen = Vec::new();
        let err = parse_bodies(&bodies, |i, _| {
            seen.push(i);
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, vec![0]);
        assert_eq!(err.0, 1);
    }
}
