//! Tokenizers built from GGUF metadata, held to llama.cpp's `llama_tokenize` /
//! `llama_detokenize` token for token.
//!
//! - `tokenizer.ggml.model = llama`: SentencePiece-style BPE with scores and `<0xNN>` byte
//!   fallback ([`spm`]).
//! - `tokenizer.ggml.model = gpt2`: byte-level BPE with merge ranks ([`bpe`]) after the
//!   pre-tokenizer named by `tokenizer.ggml.pre` ([`PreTokenizer`]).
//!
//! Special tokens (CONTROL, USER_DEFINED, UNKNOWN) are cut out of the text before tokenizing, as
//! llama.cpp's `tokenizer_st_partition` does: CONTROL and UNKNOWN ones only when `parse_special`
//! is true, USER_DEFINED ones always.
//!
//! The tables are built once from the borrowed GGUF strings; encoding allocates only its output
//! and small scratch buffers.
//!
//! ```no_run
//! use ferrolm::gguf::Gguf;
//! use ferrolm::tokenizer::{StreamDecoder, Tokenizer};
//!
//! let g = Gguf::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tok = Tokenizer::from_gguf(&g)?;
//! // As llama.cpp's tools tokenize prompts: BOS if the file asks, special tokens parsed.
//! let ids = tok.encode("<|im_start|>user\nHi!<|im_end|>\n", true, true);
//! assert_eq!(tok.decode(&ids, true), "<|im_start|>user\nHi!<|im_end|>\n");
//! // Streaming output: text appears as soon as its UTF-8 characters are complete.
//! let mut out = StreamDecoder::new();
//! for &id in &ids {
//!     if tok.is_eog(id) {
//!         break;
//!     }
//!     print!("{}", out.push(&tok, id, false));
//! }
//! print!("{}", out.flush());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bpe;
mod load;
mod pretokenize;
mod spm;
mod stream;
mod unicode;
mod unicode_data;
mod vocab;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::gguf::{Gguf, GgufError, ValueType};

pub use pretokenize::PreTokenizer;
pub use stream::StreamDecoder;

use bpe::{Bpe, BpeScratch};
use vocab::Vocab;

/// Errors building a tokenizer from GGUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported tokenizer model '{0}' (tokenizer.ggml.model; supported: llama, gpt2)")]
    UnsupportedModel(String),
    #[error(
        "unsupported pre-tokenizer '{0}' (tokenizer.ggml.pre; supported: default, gpt-2, \
         llama-bpe/llama3, smollm/starcoder, qwen2, falcon, bloom/poro-chat/gpt3-finnish, viking \
         and their aliases)"
    )]
    UnsupportedPreTokenizer(String),
    #[error("metadata key '{key}' is an array of {found}, expected {expected}")]
    WrongElementType {
        key: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("metadata key '{key}' has {have} entries but the vocabulary has {n_vocab} tokens")]
    TooShort {
        key: &'static str,
        have: usize,
        n_vocab: usize,
    },
    #[error("the vocabulary (tokenizer.ggml.tokens) is empty")]
    EmptyVocab,
    #[error("the vocabulary has {0} tokens, more than ferrolm supports (2^31 - 1)")]
    VocabTooLarge(usize),
    #[error("{what} would take {bytes} bytes, over the 2 GiB ferrolm supports")]
    TooLarge { what: &'static str, bytes: usize },
    #[error("duplicate token {text:?} in the vocabulary: ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("{flag} is true, but {id_key} is not set (or out of range)")]
    MissingSpecialToken {
        flag: &'static str,
        id_key: &'static str,
    },
}

/// A token's type as stored in `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i32(v: i32) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

// Token attribute bits, as llama.cpp's `llama_token_attr`.
const ATTR_UNKNOWN: u16 = 1 << 0;
const ATTR_UNUSED: u16 = 1 << 1;
const ATTR_NORMAL: u16 = 1 << 2;
const ATTR_CONTROL: u16 = 1 << 3;
const ATTR_USER_DEFINED: u16 = 1 << 4;
const ATTR_BYTE: u16 = 1 << 5;

fn attr_of(t: TokenType) -> u16 {
    match t {
        TokenType::Undefined => 0,
        TokenType::Normal => ATTR_NORMAL,
        TokenType::Unknown => ATTR_UNKNOWN,
        TokenType::Control => ATTR_CONTROL,
        TokenType::UserDefined => ATTR_USER_DEFINED,
        TokenType::Unused => ATTR_UNUSED,
        TokenType::Byte => ATTR_BYTE,
    }
}

/// FxHash (rustc's hasher): a fast, non-cryptographic hash for the vocabulary maps. The keys are
/// the model's own strings, not attacker-chosen input, so HashDoS resistance is not needed.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ (rest.len() as u64) << 56);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak; hash tables index with them (rustc-hash 2 does
        // the same rotation).
        self.hash.rotate_left(26)
    }
}

pub(crate) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

enum Model {
    /// SentencePiece-style BPE with scores.
    Spm {
        /// Token for each byte: `<0xNN>`, else the one-byte string itself.
        byte_tokens: Box<[Option<u32>; 256]>,
        /// No token has a `▁` after another character, so the text can be merged piece by
        /// piece ([`spm::chunks`]); true for LLaMA's vocabulary.
        chunkable: bool,
    },
    /// Byte-level BPE.
    Bpe(Box<Bpe>),
}

/// A tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata.
pub struct Tokenizer {
    model: Model,
    /// Token texts and the text -> id index, `[n_vocab]`.
    vocab: Vocab,
    scores: Vec<f32>,
    attrs: Vec<u16>,
    types: Vec<TokenType>,
    /// `token_to_piece(id, special = true)` for every token, concatenated; `piece_off[id]..
    /// piece_off[id + 1]` is token `id`'s piece.
    pieces: Vec<u8>,
    piece_off: Vec<u32>,
    /// CONTROL / USER_DEFINED / UNKNOWN ids, longest text first (llama.cpp's
    /// `cache_special_tokens`).
    specials: Vec<u32>,
    /// End-of-generation ids, sorted.
    eog: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

/// Largest token-text arena / piece table (offsets are u32).
const MAX_TABLE_BYTES: usize = i32::MAX as usize;
/// Largest text encoded in one go (code point offsets are u32).
const MAX_ENCODE_SLICE: usize = 1 << 30;

impl std::fmt::Debug for Tokenizer {
    /// A summary (the tables have hundreds of thousands of entries).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Tokenizer");
        match &self.model {
            Model::Spm { chunkable, .. } => d
                .field("model", &"llama (spm)")
                .field("chunkable", chunkable),
            Model::Bpe(b) => d.field("model", &"gpt2 (bpe)").field("pre", &b.pre),
        };
        d.field("n_vocab", &self.n_vocab())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("add_space_prefix", &self.add_space_prefix)
            .field("clean_spaces", &self.clean_spaces)
            .field("n_special", &self.specials.len())
            .field("eog", &self.eog)
            .finish()
    }
}

impl Tokenizer {
    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token, from the file or detected by text (`<|im_end|>`, `<|eot_id|>`, ...).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether the token ends generation (llama.cpp's `llama_vocab_is_eog`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// The token's text as stored in the vocabulary (U+FFFD for an out-of-range id).
    pub fn token_text(&self, id: u32) -> &str {
        self.vocab.get(id).unwrap_or("\u{FFFD}")
    }

    /// The token's type, or `None` for an out-of-range id.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The token's score (SentencePiece log-probability; 0 for BPE vocabularies).
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// Whether the token is a control token (rendered only with `special`).
    pub fn is_control(&self, id: u32) -> bool {
        self.attrs
            .get(id as usize)
            .is_some_and(|a| a & ATTR_CONTROL != 0)
    }

    /// The id of the token whose text is exactly `text`.
    pub fn find_token(&self, text: &str) -> Option<u32> {
        self.vocab.find(text)
    }

    /// The bytes a token stands for (byte tokens decoded, `▁` / GPT-2 byte encoding undone).
    /// Control and unknown tokens render as nothing unless `special`. An out-of-range id renders
    /// as U+FFFD.
    pub fn token_to_piece(&self, id: u32, special: bool) -> &[u8] {
        let i = id as usize;
        let Some(&attr) = self.attrs.get(i) else {
            return "\u{FFFD}".as_bytes();
        };
        if !special && attr & (ATTR_UNKNOWN | ATTR_CONTROL) != 0 {
            return &[];
        }
        &self.pieces[self.piece_off[i] as usize..self.piece_off[i + 1] as usize]
    }

    /// Tokenize `text`. With `add_special`, BOS / EOS are added as the file says. With
    /// `parse_special`, control tokens written in the text (`<|im_start|>`) become their ids;
    /// user-defined tokens always do.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        self.encode_into(text, add_special, parse_special, &mut out);
        out
    }

    /// Tokenize bytes that may not be valid UTF-8. Invalid input is repaired the way llama.cpp's
    /// BPE pre-tokenizer reads it (`unicode_cpts_from_utf8`): every byte that does not start a
    /// well-formed sequence becomes U+FFFD on its own, and sequences are decoded without
    /// llama.cpp's missing overlong check (`C0 80` is NUL). Surrogates and code points past
    /// U+10FFFF, which Rust strings cannot hold, become one U+FFFD each. (For SentencePiece
    /// vocabularies llama.cpp keeps invalid bytes raw; we tokenize the repaired text.)
    pub fn encode_bytes(&self, bytes: &[u8], add_special: bool, parse_special: bool) -> Vec<u32> {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.encode(text, add_special, parse_special),
            Err(_) => self.encode(&utf8_lossy_llama(bytes), add_special, parse_special),
        }
    }

    /// [`Tokenizer::encode`], appending to `out`.
    ///
    /// Texts over 1 GiB are tokenized in slices of at most 1 GiB cut at character boundaries
    /// (positions inside are kept in 32 bits).
    pub fn encode_into(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        out: &mut Vec<u32>,
    ) {
        self.encode_sliced(text, add_special, parse_special, MAX_ENCODE_SLICE, out);
    }

    fn encode_sliced(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        max_slice: usize,
        out: &mut Vec<u32>,
    ) {
        if text.len() > max_slice {
            if add_special && self.add_bos {
                out.extend(self.bos);
            }
            let mut rest = text;
            while !rest.is_empty() {
                let mut cut = rest.len().min(max_slice);
                while cut > 0 && !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                if cut == 0 {
                    // max_slice shorter than one character: take the character.
                    cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
                }
                self.encode_one(&rest[..cut], false, parse_special, out);
                rest = &rest[cut..];
            }
            if add_special && self.add_eos {
                out.extend(self.eos);
            }
            return;
        }
        self.encode_one(text, add_special, parse_special, out);
    }

    /// Encode a text of at most [`MAX_ENCODE_SLICE`] bytes.
    fn encode_one(&self, text: &str, add_special: bool, parse_special: bool, out: &mut Vec<u32>) {
        let frags = self.partition(text, parse_special);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        match &self.model {
            Model::Spm {
                byte_tokens,
                chunkable,
            } => {
                let lookup = |s: &str| self.vocab.find(s).map(|id| (id, self.scores[id as usize]));
                let byte_token = |b: u8| byte_tokens[b as usize].or(self.unk);
                let mut is_prev_special = true;
                let mut buf = String::new();
                let mut scratch = spm::SpmScratch::default();
                let mut cached: Vec<u32> = Vec::new();
                for f in &frags {
                    match *f {
                        Frag::Text(a, b) => {
                            buf.clear();
                            if self.add_space_prefix && is_prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[a..b].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            if *chunkable {
                                // Repeated pieces (words) are merged once per call.
                                let mut cache: FxHashMap<&str, (u32, u32)> = FxHashMap::default();
                                for piece in spm::chunks(&buf) {
                                    if let Some(&(s, n)) = cache.get(piece) {
                                        out.extend_from_slice(
                                            &cached[s as usize..(s + n) as usize],
                                        );
                                        continue;
                                    }
                                    let first = out.len();
                                    spm::encode(piece, lookup, byte_token, &mut scratch, out);
                                    let s = cached.len() as u32;
                                    cached.extend_from_slice(&out[first..]);
                                    cache.insert(piece, (s, (out.len() - first) as u32));
                                }
                            } else {
                                spm::encode(&buf, lookup, byte_token, &mut scratch, out);
                            }
                            is_prev_special = false;
                        }
                        Frag::Token(id) => {
                            out.push(id);
                            is_prev_special = true;
                        }
                    }
                }
            }
            Model::Bpe(bpe) => {
                let lookup = |s: &str| self.vocab.find(s);
                let mut scratch = BpeScratch::default();
                for f in &frags {
                    match *f {
                        Frag::Text(a, b) => bpe.encode(&text[a..b], &mut scratch, lookup, out),
                        Frag::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
    }

    /// Cut special tokens out of the text (llama.cpp's `tokenizer_st_partition`): for each
    /// special token, longest first, every occurrence inside a still-raw fragment becomes a token.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Frag> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Frag::Text(0, text.len()));
        let mut next = Vec::new();
        for &id in &self.specials {
            let attr = self.attrs[id as usize];
            if !parse_special && attr & (ATTR_CONTROL | ATTR_UNKNOWN) != 0 {
                continue;
            }
            let tt = self.vocab.text(id);
            if !text.contains(tt) {
                continue;
            }
            next.clear();
            for f in &frags {
                let Frag::Text(mut a, b) = *f else {
                    next.push(*f);
                    continue;
                };
                while let Some(p) = text[a..b].find(tt) {
                    let m = a + p;
                    if m > a {
                        next.push(Frag::Text(a, m));
                    }
                    next.push(Frag::Token(id));
                    a = m + tt.len();
                }
                if a < b {
                    next.push(Frag::Text(a, b));
                }
            }
            std::mem::swap(&mut frags, &mut next);
        }
        frags
    }

    /// Detokenize like `llama_detokenize(ids, remove_special = false, unparse_special =
    /// special)`: control tokens render only with `special`, the SentencePiece leading space is
    /// dropped, and vocabularies with `clean_spaces` get llama.cpp's space clean-up. Invalid UTF-8
    /// becomes U+FFFD; out-of-range ids render as U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        self.decode_bytes(ids, special, &mut bytes);
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// [`Tokenizer::decode`] without the UTF-8 conversion: the raw bytes, appended to `out`.
    pub fn decode_bytes(&self, ids: &[u32], special: bool, out: &mut Vec<u8>) {
        let start = out.len();
        let mut remove_space = self.add_space_prefix;
        for &id in ids {
            let mut piece = self.token_to_piece(id, special);
            if remove_space {
                if let [b' ', rest @ ..] = piece {
                    piece = rest;
                }
            }
            remove_space = false;
            out.extend_from_slice(piece);
        }
        if self.clean_spaces {
            let n = clean_spaces(&mut out[start..]);
            out.truncate(start + n);
        }
    }
}

/// Decode UTF-8 like llama.cpp's `unicode_cpt_from_utf8` loop: a lead byte and the right number
/// of continuation bytes make a code point (no overlong check); anything else is one U+FFFD per
/// byte.
fn utf8_lossy_llama(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    let cont = |i: usize| bytes.get(i).is_some_and(|&b| b & 0xC0 == 0x80);
    let mut i = 0;
    while i < bytes.len() {
        let b0 = bytes[i] as u32;
        let (len, init) = if b0 & 0x80 == 0 {
            (1, b0)
        } else if b0 & 0x40 == 0 {
            (0, 0)
        } else if b0 & 0x20 == 0 {
            (2, b0 & 0x1F)
        } else if b0 & 0x10 == 0 {
            (3, b0 & 0x0F)
        } else if b0 & 0x08 == 0 {
            (4, b0 & 0x07)
        } else {
            (0, 0)
        };
        if len == 0 || !(1..len).all(|k| cont(i + k)) {
            out.push('\u{FFFD}');
            i += 1;
            continue;
        }
        let cp = (1..len).fold(init, |acc, k| acc << 6 | (bytes[i + k] as u32 & 0x3F));
        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
        i += len;
    }
    out
}

/// A piece of the input: raw text `[a, b)` or a special token.
#[derive(Clone, Copy, Debug)]
enum Frag {
    Text(usize, usize),
    Token(u32),
}

/// llama.cpp's `clean_up_tokenization_spaces` passes, in place; returns the new length.
/// Ported literally (including its in-place quirks) so the output matches byte for byte.
fn clean_spaces(text: &mut [u8]) -> usize {
    let mut total = text.len();
    // first pass: " ?", " !", " .", " ," lose the space
    let total1 = total;
    total = usize::from(total1 > 0);
    for i in 1..total1 {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    // second pass: " ' " loses both spaces
    let total2 = total;
    total = usize::from(total2 > 0);
    let mut i = 1;
    while i < total2 {
        let x = text[i];
        if x == b'\'' && i + 1 < total2 && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    // third pass: " 's", " 'm", " 're", " 've" lose the space
    let total3 = total;
    total = usize::from(total3 > 0);
    for i in 1..total3 {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < total3 {
            let x1 = text[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if i + 2 < total3 {
                let x2 = text[i + 2];
                if x2 == b'e' && (x1 == b'r' || x1 == b'v') {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_like_llama() {
        assert_eq!(utf8_lossy_llama(b"ok"), "ok");
        assert_eq!(utf8_lossy_llama(b"a\xFFb"), "a\u{FFFD}b");
        // A truncated 3-byte sequence: one U+FFFD per byte (Rust's lossy decoding gives one).
        assert_eq!(utf8_lossy_llama(b"\xE2\x82x"), "\u{FFFD}\u{FFFD}x");
        assert_eq!(utf8_lossy_llama(b"\xE2\x82\xAC"), "€");
        assert_eq!(
            utf8_lossy_llama(b"\xC0\x80"),
            "\0",
            "overlong NUL, as llama.cpp decodes it"
        );
        assert_eq!(utf8_lossy_llama(b"\xED\xA0\x80"), "\u{FFFD}", "surrogate");
        assert_eq!(
            utf8_lossy_llama(b"\xF0\x9F\x98"),
            "\u{FFFD}\u{FFFD}\u{FFFD}"
        );
    }

    /// Texts over the slice limit are encoded slice by slice, cut at character boundaries.
    #[test]
    fn long_texts_are_sliced() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/tokenize/llamacpp/ggml-vocab-gpt-2.gguf"
        );
        let g = Gguf::open(path).expect("vocab file");
        let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
        let text = "héllo wörld, 😀 again";
        let mut whole = Vec::new();
        tok.encode_sliced(text, false, false, 1 << 30, &mut whole);
        assert_eq!(whole, tok.encode(text, false, false));
        let mut sliced = Vec::new();
        tok.encode_sliced(text, false, false, 7, &mut sliced);
        // "héllo " = 7 bytes; "wörld," = 7; " 😀 a" = 7; "gain" = 4
        let want: Vec<u32> = ["héllo ", "wörld,", " 😀 a", "gain"]
            .iter()
            .flat_map(|s| tok.encode(s, false, false))
            .collect();
        assert_eq!(sliced, want);
        let mut tiny = Vec::new();
        tok.encode_sliced("😀", false, false, 1, &mut tiny);
        assert_eq!(tiny, tok.encode("😀", false, false));
    }

    /// Merging SentencePiece text piece by piece gives the tokens of merging it whole.
    #[test]
    fn spm_chunked_equals_whole() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/tokenize/llamacpp/ggml-vocab-llama-spm.gguf"
        );
        let g = Gguf::open(path).expect("vocab file");
        let mut tok = Tokenizer::from_gguf(&g).expect("tokenizer");
        let text =
            "The quick  brown fox\n\n   jumps over\tthe lazy dog's back,   again and again!! \
                    Ünïcödé wörds, 中文字符, emoji 😀👍🏽 and spaces   at the end   ";
        let text = text.repeat(3);
        let chunked = tok.encode(&text, true, false);
        match &mut tok.model {
            Model::Spm { chunkable, .. } => {
                assert!(*chunkable, "LLaMA's vocabulary allows chunking");
                *chunkable = false;
            }
            Model::Bpe(_) => unreachable!("an SPM vocabulary"),
        }
        assert_eq!(tok.encode(&text, true, false), chunked);
    }

    fn clean(s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        let n = clean_spaces(&mut b);
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    #[test]
    fn clean_spaces_passes() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("it 's a ' b"), "it's a'b");
        assert_eq!(clean("we 're ok"), "we're ok");
        assert_eq!(clean("don 't"), "don 't");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ?"), "?");
    }
}
