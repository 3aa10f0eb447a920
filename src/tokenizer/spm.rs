//! SentencePiece-style BPE with scores (llama.cpp's `llm_tokenizer_spm_session`).
//!
//! The text (spaces already escaped to U+2581) starts as one symbol per UTF-8 character. The
//! adjacent pair whose concatenation is a vocabulary token with the highest score is merged first
//! (ties: leftmost), until no pair forms a token. Symbols that are not tokens fall back to byte
//! tokens `<0xNN>`.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Buffers reused across the calls of one `encode`.
#[derive(Default)]
pub(crate) struct SpmScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Bigram>,
}

/// Split escaped text before every `▁` that follows another character than `▁`: `"▁a▁▁b"` ->
/// `["▁a", "▁▁b"]`. When no vocabulary token has a `▁` after another character, no token can
/// span such a cut, and merging the pieces one by one gives exactly the tokens of merging the
/// whole text (merges in different pieces never interact; within a piece their order is the
/// same).
pub(crate) fn chunks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut prev_space = true;
        let mut cut = rest.len();
        for (i, c) in rest.char_indices() {
            let space = c == '\u{2581}';
            if space && !prev_space && i > 0 {
                cut = i;
                break;
            }
            prev_space = space;
        }
        let (head, tail) = rest.split_at(cut);
        rest = tail;
        Some(head)
    })
}

#[derive(Clone, Copy, Debug)]
struct Sym {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

#[derive(Clone, Copy, Debug)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

/// Tokenize `text` (already escaped); `lookup` maps a string to a token id and its score;
/// `byte_token` gives the fallback token for a byte.
pub(crate) fn encode(
    text: &str,
    lookup: impl Fn(&str) -> Option<(u32, f32)>,
    byte_token: impl Fn(u8) -> Option<u32>,
    scratch: &mut SpmScratch,
    out: &mut Vec<u32>,
) {
    let SpmScratch { syms, heap } = scratch;
    syms.clear();
    heap.clear();
    let n_chars = text.chars().count();
    for (i, (off, c)) in text.char_indices().enumerate() {
        syms.push(Sym {
            start: off as u32,
            len: c.len_utf8() as u32,
            prev: i as i32 - 1,
            next: if i + 1 == n_chars { -1 } else { i as i32 + 1 },
        });
    }
    if syms.is_empty() {
        return;
    }
    let try_add = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, l: i32, r: i32| {
        if l < 0 || r < 0 {
            return;
        }
        let (a, b) = (syms[l as usize], syms[r as usize]);
        let s = &text[a.start as usize..(a.start + a.len + b.len) as usize];
        if let Some((_, score)) = lookup(s) {
            heap.push(Bigram {
                score,
                left: l as u32,
                right: r as u32,
                size: a.len + b.len,
            });
        }
    };
    for i in 1..syms.len() as i32 {
        try_add(syms, heap, i - 1, i);
    }
    while let Some(bg) = heap.pop() {
        let (l, r) = (bg.left as usize, bg.right as usize);
        let (ls, rs) = (syms[l], syms[r]);
        if ls.len == 0 || rs.len == 0 || ls.len + rs.len != bg.size {
            continue;
        }
        syms[l].len += rs.len;
        syms[r].len = 0;
        syms[l].next = rs.next;
        if rs.next >= 0 {
            syms[rs.next as usize].prev = l as i32;
        }
        try_add(syms, heap, ls.prev, l as i32);
        try_add(syms, heap, l as i32, rs.next);
    }
    let mut i = 0i32;
    while i >= 0 {
        let s = syms[i as usize];
        let piece = &text[s.start as usize..(s.start + s.len) as usize];
        match lookup(piece) {
            Some((id, _)) => out.push(id),
            None => {
                // Only single characters can be left unmerged without being tokens (every merge
                // makes a token), so llama.cpp's `rev_merge` re-segmenting never applies here.
                for &b in piece.as_bytes() {
                    if let Some(id) = byte_token(b) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunking() {
        let v: Vec<&str> = chunks("\u{2581}a\u{2581}\u{2581}b\u{2581}c").collect();
        assert_eq!(v, ["\u{2581}a", "\u{2581}\u{2581}b", "\u{2581}c"]);
        let v: Vec<&str> = chunks("ab\u{2581}").collect();
        assert_eq!(v, ["ab", "\u{2581}"]);
        assert_eq!(chunks("").count(), 0);
        let v: Vec<&str> = chunks("\u{2581}\u{2581}").collect();
        assert_eq!(v, ["\u{2581}\u{2581}"]);
    }
}
