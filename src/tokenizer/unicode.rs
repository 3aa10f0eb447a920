//! Code point classes and GPT-2's byte-to-unicode table, as llama.cpp's `unicode.cpp` has them.

use super::unicode_data::CP_RANGES;

/// The classes the pre-tokenizer regexes ask about (`\p{L}`, `\p{N}`, `\s`, `\p{P}`).
///
/// Whitespace is llama.cpp's fixed White_Space list; it wins over the general category
/// (no whitespace code point is a letter, number or punctuation anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CpClass {
    /// Marks, symbols, controls, non-space separators, unassigned code points.
    Other = 0,
    Letter = 1,
    Number = 2,
    Whitespace = 3,
    Punct = 4,
}

/// Classes of the 128 ASCII code points, read from the generated table once.
const fn ascii_classes() -> [CpClass; 128] {
    let mut out = [CpClass::Other; 128];
    let mut cp = 0;
    while cp < 128 {
        // CP_RANGES is sorted; a linear walk is fine in a const fn run at compile time.
        let mut i = 0;
        while i + 1 < CP_RANGES.len() && CP_RANGES[i + 1].0 <= cp as u32 {
            i += 1;
        }
        out[cp] = CP_RANGES[i].1;
        cp += 1;
    }
    out
}

static ASCII_CLASSES: [CpClass; 128] = ascii_classes();

/// Class of a code point (Unicode 15.1, as llama.cpp's tables).
#[inline]
pub(crate) fn class_of(c: char) -> CpClass {
    let cp = c as u32;
    if cp < 128 {
        return ASCII_CLASSES[cp as usize];
    }
    // Last range whose start is <= cp. CP_RANGES[0].0 == 0, so idx >= 1.
    let idx = CP_RANGES.partition_point(|&(start, _)| start <= cp);
    CP_RANGES[idx - 1].1
}

/// GPT-2's reversible byte -> code point map (`bytes_to_unicode`): printable bytes map to
/// themselves, the other 68 to U+0100.. in byte order.
pub(crate) const fn byte_to_cp_table() -> [u32; 256] {
    let mut out = [0u32; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if printable {
            out[b] = b as u32;
        } else {
            out[b] = 256 + n;
            n += 1;
        }
        b += 1;
    }
    out
}

pub(crate) static BYTE_TO_CP: [u32; 256] = byte_to_cp_table();

/// Inverse of [`BYTE_TO_CP`]: code point (< 0x144) -> byte, or `None`.
#[inline]
pub(crate) fn cp_to_byte(cp: u32) -> Option<u8> {
    static TABLE: [i16; 0x144] = {
        let mut t = [-1i16; 0x144];
        let mut b = 0usize;
        while b < 256 {
            t[BYTE_TO_CP_CONST[b] as usize] = b as i16;
            b += 1;
        }
        t
    };
    const BYTE_TO_CP_CONST: [u32; 256] = byte_to_cp_table();
    match TABLE.get(cp as usize) {
        Some(&b) if b >= 0 => Some(b as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class_of('a'), CpClass::Letter);
        assert_eq!(class_of('7'), CpClass::Number);
        assert_eq!(class_of(' '), CpClass::Whitespace);
        assert_eq!(class_of('\u{3000}'), CpClass::Whitespace);
        assert_eq!(class_of('\u{85}'), CpClass::Whitespace);
        assert_eq!(class_of('!'), CpClass::Punct);
        assert_eq!(class_of('$'), CpClass::Other);
        assert_eq!(class_of('é'), CpClass::Letter);
        assert_eq!(class_of('²'), CpClass::Number);
        assert_eq!(class_of('\u{301}'), CpClass::Other);
        assert_eq!(class_of('中'), CpClass::Letter);
        assert_eq!(class_of('😀'), CpClass::Other);
        assert_eq!(class_of('\u{10FFFF}'), CpClass::Other);
        assert_eq!(class_of('\u{1C89}'), CpClass::Other); // unassigned in 15.1
    }

    #[test]
    fn byte_map_roundtrip() {
        for b in 0..=255u8 {
            assert_eq!(cp_to_byte(BYTE_TO_CP[b as usize]), Some(b));
        }
        assert_eq!(BYTE_TO_CP[b' ' as usize], 0x120); // 'Ġ'
        assert_eq!(BYTE_TO_CP[b'\n' as usize], 0x10A); // 'Ċ'
        assert_eq!(cp_to_byte(0x144), None);
    }
}
