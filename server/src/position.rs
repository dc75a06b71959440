//! LSP positions ↔ offsets in a rope, under the negotiated position encoding.
//!
//! LSP counts a line's characters in UTF-8 bytes, UTF-16 code units (the default,
//! and all VS Code speaks) or code points. Its line breaks are `\n`, `\r\n` and
//! `\r` only; ropey is built with `cr_lines` and without `unicode_lines`, so it
//! agrees (U+2028, U+0085 and friends are ordinary characters to both).
//!
//! Positions past the end of a line clamp to the line's end and lines past the end
//! of the document clamp to its end, as the specification asks; a position inside
//! a character (between the two halves of a surrogate pair, or inside a multi-byte
//! UTF-8 sequence) rounds down to the character's start.

use basis_code::Point;
use ropey::Rope;
use tower_lsp_server::ls_types::{Position, PositionEncodingKind, Range};

/// The position encodings Basis speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
    Utf32,
}

impl Encoding {
    /// The first of the client's encodings (in its order of preference) that we
    /// speak; UTF-16 when it offers none, as the specification requires.
    pub fn negotiate(offered: Option<&[PositionEncodingKind]>) -> Encoding {
        offered
            .unwrap_or_default()
            .iter()
            .find_map(|k| match k.as_str() {
                "utf-8" => Some(Encoding::Utf8),
                "utf-16" => Some(Encoding::Utf16),
                "utf-32" => Some(Encoding::Utf32),
                _ => None,
            })
            .unwrap_or(Encoding::Utf16)
    }

    pub fn kind(self) -> PositionEncodingKind {
        match self {
            Encoding::Utf8 => PositionEncodingKind::UTF8,
            Encoding::Utf16 => PositionEncodingKind::UTF16,
            Encoding::Utf32 => PositionEncodingKind::UTF32,
        }
    }

    fn units(self, c: char) -> usize {
        match self {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf32 => 1,
        }
    }
}

/// The char index of the end of line `line`'s content (before its line break).
fn line_content_end(rope: &Rope, line: usize) -> usize {
    let start = rope.line_to_char(line);
    let slice = rope.line(line);
    let mut len = slice.len_chars();
    // Strip the line break: "\r\n", "\n" or "\r".
    if len > 0 && slice.char(len - 1) == '\n' {
        len -= 1;
        if len > 0 && slice.char(len - 1) == '\r' {
            len -= 1;
        }
    } else if len > 0 && slice.char(len - 1) == '\r' {
        len -= 1;
    }
    start + len
}

/// The char index of an LSP position (clamped, see the module docs). The flag is
/// false when the position had to be clamped or rounded.
pub fn to_char(rope: &Rope, pos: Position, enc: Encoding) -> (usize, bool) {
    let line = pos.line as usize;
    if line >= rope.len_lines() {
        return (rope.len_chars(), false);
    }
    let start = rope.line_to_char(line);
    let end = line_content_end(rope, line);
    let want = pos.character as usize;
    let mut units = 0usize;
    let mut idx = start;
    for c in rope.slice(start..end).chars() {
        if units == want {
            return (idx, true);
        }
        let next = units + enc.units(c);
        if next > want {
            // Inside a character: round down to its start.
            return (idx, false);
        }
        units = next;
        idx += 1;
    }
    (idx, units == want)
}

/// The LSP position of a char index.
pub fn from_char(rope: &Rope, char_idx: usize, enc: Encoding) -> Position {
    let char_idx = char_idx.min(rope.len_chars());
    let line = rope.char_to_line(char_idx);
    let start = rope.line_to_char(line);
    let character: usize = match enc {
        Encoding::Utf32 => char_idx - start,
        Encoding::Utf8 => rope.char_to_byte(char_idx) - rope.line_to_byte(line),
        Encoding::Utf16 => rope.char_to_utf16_cu(char_idx) - rope.char_to_utf16_cu(start),
    };
    Position::new(line as u32, character as u32)
}

/// The LSP position of a byte offset (rounded down to a char boundary).
pub fn from_byte(rope: &Rope, byte: usize, enc: Encoding) -> Position {
    let byte = byte.min(rope.len_bytes());
    from_char(rope, rope.byte_to_char(byte), enc)
}

/// The tree-sitter point (row, byte column) of a char index.
pub fn point_of_char(rope: &Rope, char_idx: usize) -> Point {
    let line = rope.char_to_line(char_idx);
    Point {
        row: line,
        column: rope.char_to_byte(char_idx) - rope.line_to_byte(line),
    }
}

/// The LSP range of a byte range.
pub fn range_of_bytes(rope: &Rope, start: usize, end: usize, enc: Encoding) -> Range {
    Range::new(from_byte(rope, start, enc), from_byte(rope, end, enc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_all(text: &str, enc: Encoding) {
        let rope = Rope::from_str(text);
        for i in 0..=rope.len_chars() {
            let p = from_char(&rope, i, enc);
            let (back, exact) = to_char(&rope, p, enc);
            // A char index between "\r" and "\n" is not a position LSP can name.
            let inside_crlf =
                i > 0 && i < rope.len_chars() && rope.char(i - 1) == '\r' && rope.char(i) == '\n';
            if !inside_crlf {
                assert_eq!(back, i, "{enc:?} char {i} -> {p:?} in {text:?}");
                assert!(exact);
            }
        }
    }

    #[test]
    fn positions_round_trip_in_every_encoding() {
        let text = "a😀b\r\nçé\n\u{2028}x\rlast中文\u{85}";
        for enc in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
            roundtrip_all(text, enc);
        }
    }

    #[test]
    fn only_lsp_line_breaks_count() {
        let rope = Rope::from_str("a\u{2028}b\u{85}c\u{c}d\r\ne\rf\ng");
        assert_eq!(rope.len_lines(), 4);
        let p = from_char(&rope, rope.len_chars() - 1, Encoding::Utf16);
        assert_eq!(p, Position::new(3, 0));
    }

    #[test]
    fn encodings_count_differently() {
        let rope = Rope::from_str("😀x");
        let x = 1; // char index of 'x'
        assert_eq!(from_char(&rope, x, Encoding::Utf8).character, 4);
        assert_eq!(from_char(&rope, x, Encoding::Utf16).character, 2);
        assert_eq!(from_char(&rope, x, Encoding::Utf32).character, 1);
        // The middle of the surrogate pair rounds down.
        assert_eq!(
            to_char(&rope, Position::new(0, 1), Encoding::Utf16),
            (0, false)
        );
    }

    #[test]
    fn out_of_range_positions_clamp() {
        let rope = Rope::from_str("ab\ncd\n");
        assert_eq!(
            to_char(&rope, Position::new(0, 99), Encoding::Utf16),
            (2, false)
        );
        assert_eq!(
            to_char(&rope, Position::new(9, 0), Encoding::Utf16),
            (6, false)
        );
        assert_eq!(
            to_char(&rope, Position::new(2, 0), Encoding::Utf16),
            (6, true)
        );
    }

    #[test]
    fn negotiation_follows_the_clients_order() {
        let kinds = |v: &[&'static str]| -> Vec<PositionEncodingKind> {
            v.iter().map(|s| PositionEncodingKind::new(s)).collect()
        };
        assert_eq!(Encoding::negotiate(None), Encoding::Utf16);
        assert_eq!(
            Encoding::negotiate(Some(&kinds(&["utf-32", "utf-8"]))),
            Encoding::Utf32
        );
        assert_eq!(
            Encoding::negotiate(Some(&kinds(&["latin-1", "utf-8"]))),
            Encoding::Utf8
        );
        assert_eq!(Encoding::negotiate(Some(&kinds(&["x"]))), Encoding::Utf16);
    }
}
