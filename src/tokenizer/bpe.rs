//! Byte-level BPE with merge ranks (llama.cpp's `llm_tokenizer_bpe_session`).
//!
//! Words come from the pre-tokenizer. Each byte of a word starts as one symbol (GPT-2 maps every
//! byte to one printable code point, so "one char of the byte-encoded word" is "one byte").
//! Adjacent pairs are merged lowest rank first (ties: leftmost), until no listed merge applies.
//!
//! Symbols carry ids instead of strings. A merge "a b" may produce a string that is not in the
//! vocabulary; llama.cpp still merges it (it keys merges by strings). To do the same with ids, such
//! strings get "virtual" ids past the vocabulary, made once at load time. A final symbol with a
//! virtual id is not a token: like llama.cpp we then look up each byte of its text as a one-byte
//! token (only ASCII can match) and drop the rest.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;

use super::pretokenize::{Cp, PreTokenizer};
use super::unicode::BYTE_TO_CP;
use super::FxHashMap;

/// Merge tables of a byte-level BPE vocabulary.
pub(crate) struct Bpe {
    pub(crate) pre: PreTokenizer,
    /// Llama 3: a word that is a token as a whole is emitted without merging.
    pub(crate) ignore_merges: bool,
    /// `(left_id << 32 | right_id)` -> `(rank, merged id)`; ids may be virtual.
    merges: FxHashMap<u64, (u32, u32)>,
    /// Id (maybe virtual) of the one-char string each byte encodes to.
    byte_sym: [u32; 256],
    /// Texts of virtual ids `n_vocab..`.
    virtual_text: Vec<Box<str>>,
    n_vocab: u32,
}

/// Scratch buffers reused across the words of one `encode` call, and a cache of the words seen
/// in it (ordinary text repeats its words a lot).
#[derive(Default)]
pub(crate) struct BpeScratch<'t> {
    cps: Vec<Cp>,
    words: Vec<Range<usize>>,
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<Bigram>>,
    encoded: String,
    /// word bytes -> `cached[start..start + len]`
    cache: FxHashMap<&'t [u8], (u32, u32)>,
    cached: Vec<u32>,
}

/// Words up to this many bytes are merged in stack arrays by scanning for the best pair; longer
/// ones use a heap. Both merge the lowest-rank, leftmost pair first, so they agree exactly.
const SMALL_WORD: usize = 48;

#[derive(Clone, Copy, Debug)]
struct Sym {
    id: u32,
    /// Bytes of the original word covered; 0 once merged into the left neighbour.
    len: u32,
    prev: i32,
    next: i32,
}

/// Ordered by (rank, left): the lowest rank first, ties to the leftmost pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Bigram {
    rank: u32,
    left: u32,
    right: u32,
    /// Combined byte length when queued; a pair whose sides changed since is stale.
    size: u32,
    merged: u32,
}

/// Encode a byte as GPT-2's printable code point, as UTF-8 into `out`.
#[inline]
pub(crate) fn push_byte_encoded(out: &mut String, b: u8) {
    // BYTE_TO_CP only holds code points < 0x144, all valid chars.
    out.push(char::from_u32(BYTE_TO_CP[b as usize]).unwrap_or('\u{FFFD}'));
}

impl Bpe {
    /// Build the merge table. `lookup` maps a vocabulary string to its id.
    pub(crate) fn new<'m>(
        pre: PreTokenizer,
        ignore_merges: bool,
        n_vocab: u32,
        merges: impl Iterator<Item = &'m str>,
        lookup: impl Fn(&str) -> Option<u32>,
    ) -> Bpe {
        let mut virtual_map: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let mut virtual_text: Vec<Box<str>> = Vec::new();
        let mut intern = |s: &str, virtual_text: &mut Vec<Box<str>>| -> u32 {
            if let Some(id) = lookup(s) {
                return id;
            }
            if let Some(&id) = virtual_map.get(s) {
                return id;
            }
            let id = n_vocab + virtual_text.len() as u32;
            virtual_text.push(s.into());
            virtual_map.insert(s.into(), id);
            id
        };

        let mut byte_sym = [0u32; 256];
        let mut buf = String::new();
        for b in 0..=255u8 {
            buf.clear();
            push_byte_encoded(&mut buf, b);
            byte_sym[b as usize] = intern(&buf, &mut virtual_text);
        }

        let mut table: FxHashMap<u64, (u32, u32)> = FxHashMap::default();
        for (rank, m) in merges.enumerate() {
            // llama.cpp: `pos = word.find(' ', 1)`; a line without a space merges nothing.
            // (Searched as bytes: byte 1 may be inside a multi-byte first character.)
            let Some(pos) = m
                .as_bytes()
                .iter()
                .skip(1)
                .position(|&b| b == b' ')
                .map(|p| p + 1)
            else {
                continue;
            };
            let (a, b) = (&m[..pos], &m[pos + 1..]);
            if a.is_empty() || b.is_empty() {
                continue;
            }
            let ia = intern(a, &mut virtual_text);
            let ib = intern(b, &mut virtual_text);
            buf.clear();
            buf.push_str(a);
            buf.push_str(b);
            let iab = intern(&buf, &mut virtual_text);
            // The first listing of a pair wins (llama.cpp uses `emplace`).
            table
                .entry((ia as u64) << 32 | ib as u64)
                .or_insert((rank as u32, iab));
        }
        Bpe {
            pre,
            ignore_merges,
            merges: table,
            byte_sym,
            virtual_text,
            n_vocab,
        }
    }

    /// Tokenize one raw-text fragment (no special tokens in it) and append the ids to `out`.
    pub(crate) fn encode<'t>(
        &self,
        text: &'t str,
        scratch: &mut BpeScratch<'t>,
        lookup: impl Fn(&str) -> Option<u32>,
        out: &mut Vec<u32>,
    ) {
        let BpeScratch {
            cps,
            words,
            syms,
            heap,
            encoded,
            cache,
            cached,
        } = scratch;
        words.clear();
        self.pre.split_ranges(text, cps, words);
        for w in words.iter() {
            let word: &'t [u8] = &text.as_bytes()[w.clone()];
            if let Some(&(start, len)) = cache.get(word) {
                out.extend_from_slice(&cached[start as usize..(start + len) as usize]);
                continue;
            }
            let first = out.len();
            'word: {
                if self.ignore_merges {
                    encoded.clear();
                    for &b in word {
                        push_byte_encoded(encoded, b);
                    }
                    if let Some(id) = lookup(encoded) {
                        out.push(id);
                        break 'word;
                    }
                }
                if word.len() <= SMALL_WORD {
                    self.encode_word_small(word, &lookup, out);
                } else {
                    self.encode_word(word, syms, heap, &lookup, out);
                }
            }
            let start = cached.len() as u32;
            cached.extend_from_slice(&out[first..]);
            cache.insert(word, (start, (out.len() - first) as u32));
        }
    }

    /// Rank and result of merging `a b`, or `(u32::MAX, 0)` when it is not a merge.
    #[inline]
    fn pair(&self, a: u32, b: u32) -> (u32, u32) {
        self.merges
            .get(&((a as u64) << 32 | b as u64))
            .copied()
            .unwrap_or((u32::MAX, 0))
    }

    /// Merge a short word in place: each round merges the lowest-rank pair, the leftmost on ties.
    fn encode_word_small(
        &self,
        word: &[u8],
        lookup: &impl Fn(&str) -> Option<u32>,
        out: &mut Vec<u32>,
    ) {
        let n = word.len();
        if n == 0 {
            return;
        }
        let mut ids = [0u32; SMALL_WORD];
        // pairs[i] = merge of (ids[i], ids[i + 1])
        let mut pairs = [(u32::MAX, 0u32); SMALL_WORD];
        for (id, &b) in ids.iter_mut().zip(word) {
            *id = self.byte_sym[b as usize];
        }
        for i in 0..n - 1 {
            pairs[i] = self.pair(ids[i], ids[i + 1]);
        }
        let mut len = n;
        while len > 1 {
            let mut best = u32::MAX;
            let mut bi = 0;
            for (i, p) in pairs[..len - 1].iter().enumerate() {
                if p.0 < best {
                    best = p.0;
                    bi = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            ids[bi] = pairs[bi].1;
            ids.copy_within(bi + 2..len, bi + 1);
            if bi + 2 < len - 1 {
                pairs.copy_within(bi + 2..len - 1, bi + 1);
            }
            len -= 1;
            if bi > 0 {
                pairs[bi - 1] = self.pair(ids[bi - 1], ids[bi]);
            }
            if bi + 1 < len {
                pairs[bi] = self.pair(ids[bi], ids[bi + 1]);
            }
        }
        for &id in &ids[..len] {
            self.emit(id, lookup, out);
        }
    }

    fn encode_word(
        &self,
        word: &[u8],
        syms: &mut Vec<Sym>,
        heap: &mut BinaryHeap<Reverse<Bigram>>,
        lookup: &impl Fn(&str) -> Option<u32>,
        out: &mut Vec<u32>,
    ) {
        if word.is_empty() {
            return;
        }
        if word.len() == 1 {
            self.emit(self.byte_sym[word[0] as usize], lookup, out);
            return;
        }
        syms.clear();
        heap.clear();
        let n = word.len();
        for (i, &b) in word.iter().enumerate() {
            syms.push(Sym {
                id: self.byte_sym[b as usize],
                len: 1,
                prev: i as i32 - 1,
                next: if i + 1 == n { -1 } else { i as i32 + 1 },
            });
        }
        for i in 1..n {
            self.push_pair(syms, heap, i - 1, i);
        }
        while let Some(Reverse(bg)) = heap.pop() {
            let (l, r) = (bg.left as usize, bg.right as usize);
            let (ls, rs) = (syms[l], syms[r]);
            if ls.len == 0 || rs.len == 0 || ls.len + rs.len != bg.size {
                continue; // stale
            }
            syms[l].id = bg.merged;
            syms[l].len += rs.len;
            syms[l].next = rs.next;
            syms[r].len = 0;
            if rs.next >= 0 {
                syms[rs.next as usize].prev = l as i32;
            }
            if ls.prev >= 0 {
                self.push_pair(syms, heap, ls.prev as usize, l);
            }
            if rs.next >= 0 {
                self.push_pair(syms, heap, l, rs.next as usize);
            }
        }
        let mut i = 0i32;
        while i >= 0 {
            let s = syms[i as usize];
            self.emit(s.id, lookup, out);
            i = s.next;
        }
    }

    #[inline]
    fn push_pair(&self, syms: &[Sym], heap: &mut BinaryHeap<Reverse<Bigram>>, l: usize, r: usize) {
        let key = (syms[l].id as u64) << 32 | syms[r].id as u64;
        if let Some(&(rank, merged)) = self.merges.get(&key) {
            let size = syms[l].len + syms[r].len;
            heap.push(Reverse(Bigram {
                rank,
                left: l as u32,
                right: r as u32,
                size,
                merged,
            }));
        }
    }

    /// Output a final symbol: its id if it is a token, else its bytes as one-byte tokens.
    #[inline]
    fn emit(&self, id: u32, lookup: &impl Fn(&str) -> Option<u32>, out: &mut Vec<u32>) {
        if id < self.n_vocab {
            out.push(id);
            return;
        }
        let Some(text) = self.virtual_text.get((id - self.n_vocab) as usize) else {
            return;
        };
        let mut buf = [0u8; 4];
        for &b in text.as_bytes() {
            if b.is_ascii() {
                let s: &str = (b as char).encode_utf8(&mut buf);
                if let Some(t) = lookup(s) {
                    out.push(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack-array merge loop and the heap merge loop give the same tokens.
    #[test]
    fn small_and_heap_paths_agree() {
        // Vocabulary: the 256 byte symbols, then merges built from random pairs over "abcd".
        let mut vocab: Vec<String> = (0..=255u8)
            .map(|b| {
                let mut s = String::new();
                push_byte_encoded(&mut s, b);
                s
            })
            .collect();
        let mut merges = Vec::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut pool: Vec<String> = "abcd".chars().map(String::from).collect();
        for _ in 0..60 {
            let a = pool[rnd(pool.len())].clone();
            let b = pool[rnd(pool.len())].clone();
            let ab = format!("{a}{b}");
            if ab.len() > 6 || merges.contains(&format!("{a} {b}")) {
                continue;
            }
            merges.push(format!("{a} {b}"));
            if !vocab.contains(&ab) {
                vocab.push(ab.clone());
                pool.push(ab);
            }
        }
        let map: FxHashMap<String, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        let lookup = |s: &str| map.get(s).copied();
        let bpe = Bpe::new(
            PreTokenizer::Gpt2,
            false,
            vocab.len() as u32,
            merges.iter().map(|s| s.as_str()),
            lookup,
        );
        let (mut syms, mut heap) = (Vec::new(), BinaryHeap::new());
        for _ in 0..2000 {
            let n = 1 + rnd(SMALL_WORD);
            let word: Vec<u8> = (0..n).map(|_| b"abcd"[rnd(4)]).collect();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            bpe.encode_word_small(&word, &lookup, &mut a);
            bpe.encode_word(&word, &mut syms, &mut heap, &lookup, &mut b);
            assert_eq!(a, b, "{}", String::from_utf8_lossy(&word));
        }
    }
}
