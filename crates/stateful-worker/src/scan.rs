//! Classifies the lines of a log file (key log or tombstone log) by the
//! rebuild rules: the last line is torn if it has no `\n` or fails its CRC
//! (cut away); any earlier line that fails its CRC is corrupt (quarantined).
//! Pure: rebuild and inspection both use it, only rebuild acts on it.

use crate::format::checked_body;

/// One complete line that is not the torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// 1-based line number in the file.
    pub number: u64,
    /// The whole line without its `\n`.
    pub raw: &'a [u8],
    /// The CRC-checked body, or `None` if the line is corrupt.
    pub body: Option<&'a [u8]>,
}

/// The last line of a file when it cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TornTail<'a> {
    pub number: u64,
    /// Where the file is cut: the start of the torn line.
    pub offset: usize,
    pub raw: &'a [u8],
    /// True when the line ended in `\n` but failed its CRC.
    pub had_newline: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Scan<'a> {
    pub lines: Vec<Line<'a>>,
    pub torn: Option<TornTail<'a>>,
}

impl Scan<'_> {
    pub fn corrupt(&self) -> impl Iterator<Item = &Line<'_>> {
        self.lines.iter().filter(|l| l.body.is_none())
    }

    pub fn valid(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.lines
            .iter()
            .filter_map(|l| l.body.map(|b| (l.number, b)))
    }
}

pub(crate) fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut scan = Scan::default();
    let mut offset = 0;
    let mut number = 0;
    while offset < bytes.len() {
        number += 1;
        let rest = &bytes[offset..];
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            scan.torn = Some(TornTail {
                number,
                offset,
                raw: rest,
                had_newline: false,
            });
            break;
        };
        let raw = &rest[..len];
        scan.lines.push(Line {
            number,
            raw,
            body: checked_body(raw),
        });
        offset += len + 1;
    }
    if scan.torn.is_none()
        && let Some(last) = scan.lines.pop_if(|l| l.body.is_none())
    {
        scan.torn = Some(TornTail {
            number: last.number,
            offset: bytes.len() - last.raw.len() - 1,
            raw: last.raw,
            had_newline: true,
        });
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::push_crc_line;

    fn log(bodies: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            push_crc_line(&mut out, b.as_bytes());
        }
        out
    }

    #[test]
    fn a_clean_file_has_only_valid_lines() {
        let bytes = log(&["a,1", "b,2"]);
        let s = scan(&bytes);
        assert!(s.torn.is_none());
        let valid: Vec<_> = s.valid().collect();
        assert_eq!(valid, vec![(1, b"a,1".as_slice()), (2, b"b,2".as_slice())]);
        assert!(scan(b"").lines.is_empty());
    }

    #[test]
    fn a_tail_without_newline_is_torn() {
        let mut bytes = log(&["a,1"]);
        let cut = bytes.len();
        bytes.extend_from_slice(b"b,2,1234");
        let s = scan(&bytes);
        let torn = s.torn.as_ref().unwrap();
        assert_eq!(
            (torn.number, torn.offset, torn.had_newline),
            (2, cut, false)
        );
        assert_eq!(s.lines.len(), 1);
    }

    #[test]
    fn a_last_line_failing_its_crc_is_torn_not_corrupt() {
        let mut bytes = log(&["a,1"]);
        let cut = bytes.len();
        bytes.extend_from_slice(b"b,2,00000000\n");
        let s = scan(&bytes);
        let torn = s.torn.as_ref().unwrap();
        assert_eq!((torn.number, torn.offset, torn.had_newline), (2, cut, true));
        assert_eq!(s.corrupt().count(), 0);
    }

    #[test]
    fn a_bad_line_before_the_last_is_corrupt() {
        let mut bytes = log(&["a,1"]);
        bytes.extend_from_slice(b"b,2,00000000\n");
        bytes.extend_from_slice(&log(&["c,3"]));
        let s = scan(&bytes);
        assert!(s.torn.is_none());
        let corrupt: Vec<_> = s.corrupt().map(|l| l.number).collect();
        assert_eq!(corrupt, vec![2]);
        assert_eq!(s.valid().map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn only_the_final_segment_is_torn_when_both_kinds_occur() {
        let mut bytes = log(&["a,1"]);
        bytes.extend_from_slice(b"b,2,00000000\n");
        bytes.extend_from_slice(b"c,3");
        let s = scan(&bytes);
        assert_eq!(s.torn.as_ref().unwrap().number, 3);
        assert_eq!(s.corrupt().map(|l| l.number).collect::<Vec<_>>(), vec![2]);
    }
}
