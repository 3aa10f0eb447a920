//! Pre-tokenizers: split text into words before BPE, as llama.cpp's `unicode_regex_split`.
//!
//! llama.cpp runs a list of regexes per pre-tokenizer type. Each regex splits every segment the
//! previous one produced: matches become segments and so do the gaps between them. It has
//! hand-written fast paths for the GPT-2 and Llama-3 patterns; everything else goes through
//! `std::regex` on a "collapsed" text in which every non-ASCII code point is replaced by a byte
//! standing for its class. We split by hand for every pattern we support, following those exact
//! semantics (leftmost match, alternatives in order, greedy with backtracking), instead of pulling
//! in a regex engine: the patterns are few and small, and no general backtracking engine runs
//! per word.
//!
//! All splitters work on code points and emit byte ranges of the input.

use std::ops::Range;

use super::unicode::{class_of, CpClass};

/// Which llama.cpp pre-tokenizer (`tokenizer.ggml.pre`) a BPE vocabulary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_DEFAULT`: punctuation runs, then the GPT-2 pattern,
    /// then number runs, then ASCII digit triples.
    Default,
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    Gpt2,
    /// StarCoder / SmolLM: every digit on its own (`\p{N}`), then the GPT-2 pattern.
    StarCoder,
    /// Llama 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Llama3,
    /// Qwen2: the Llama-3 pattern with single digits (`\p{N}` instead of `\p{N}{1,3}`).
    Qwen2,
    /// Falcon: punctuation/symbol runs (`[\p{P}\$\+<=>\^~\|`]+`), the GPT-2 pattern, ASCII
    /// digit triples.
    Falcon,
    /// BLOOM, Poro, GPT-3 Finnish: ` ?[^(\s|.,!?…。，、।۔،)]+`.
    Bloom,
    /// Viking: the BLOOM pattern, then every digit on its own.
    Viking,
}

impl PreTokenizer {
    /// Map a `tokenizer.ggml.pre` name to a pre-tokenizer (names as in llama.cpp's
    /// `llama_vocab::impl::load`). `None` when the name is not supported.
    pub fn from_name(name: &str) -> Option<PreTokenizer> {
        Some(match name {
            "default" => PreTokenizer::Default,
            "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v1-en"
            | "jina-v2-es" | "jina-v2-de" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo"
            | "jais" | "exaone4" => PreTokenizer::Gpt2,
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva-7b" => PreTokenizer::StarCoder,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "dbrx" | "smaug-bpe"
            | "chatglm-bpe" | "glm4" => PreTokenizer::Llama3,
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2" => PreTokenizer::Qwen2,
            "falcon" => PreTokenizer::Falcon,
            "bloom" | "poro-chat" | "gpt3-finnish" => PreTokenizer::Bloom,
            "viking" => PreTokenizer::Viking,
            _ => return None,
        })
    }

    /// Split `text` into the words BPE then tokenizes one by one (in order, covering `text`).
    pub fn split(self, text: &str) -> Vec<&str> {
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        self.split_ranges(text, &mut scratch, &mut out);
        out.into_iter().map(|r| &text[r]).collect()
    }

    /// Split `text` into words; appends their byte ranges to `out` (in order, covering `text`).
    pub(crate) fn split_ranges(
        self,
        text: &str,
        scratch: &mut Vec<Cp>,
        out: &mut Vec<Range<usize>>,
    ) {
        load_cps(text, scratch);
        let cps = &scratch[..];
        match self {
            PreTokenizer::Gpt2 => split_gpt2(cps, 0, cps.len(), text.len(), out),
            PreTokenizer::Llama3 => split_llama3(cps, 0, cps.len(), text.len(), 3, out),
            PreTokenizer::Qwen2 => split_llama3(cps, 0, cps.len(), text.len(), 1, out),
            PreTokenizer::StarCoder => {
                // `\p{N}`: each number code point alone; the gaps between them are segments too.
                let mut start = 0;
                for i in 0..cps.len() {
                    if cps[i].class == CpClass::Number {
                        if start < i {
                            split_gpt2(cps, start, i, text.len(), out);
                        }
                        split_gpt2(cps, i, i + 1, text.len(), out);
                        start = i + 1;
                    }
                }
                if start < cps.len() {
                    split_gpt2(cps, start, cps.len(), text.len(), out);
                }
            }
            PreTokenizer::Default => split_stages(cps, text.len(), &DEFAULT_STAGES, out),
            PreTokenizer::Falcon => split_stages(cps, text.len(), &FALCON_STAGES, out),
            PreTokenizer::Bloom => split_stages(cps, text.len(), &[Stage::Bloom], out),
            PreTokenizer::Viking => {
                split_stages(cps, text.len(), &[Stage::Bloom, Stage::EachNumber], out)
            }
        }
    }
}

/// One code point of the text being split.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cp {
    /// Byte offset in the text.
    off: u32,
    c: char,
    class: CpClass,
}

fn load_cps(text: &str, out: &mut Vec<Cp>) {
    out.clear();
    out.reserve(text.len());
    for (off, c) in text.char_indices() {
        out.push(Cp {
            off: off as u32,
            c,
            class: class_of(c),
        });
    }
}

/// Byte offset of code point `i` (or the end of the text).
#[inline]
fn byte_at(cps: &[Cp], i: usize, text_len: usize) -> usize {
    if i < cps.len() {
        cps[i].off as usize
    } else {
        text_len
    }
}

/// Emits code point ranges as byte ranges, dropping empty ones (llama.cpp's `_add_token`).
struct Emitter<'a> {
    cps: &'a [Cp],
    text_len: usize,
    prev: usize,
    out: &'a mut Vec<Range<usize>>,
}

impl Emitter<'_> {
    #[inline]
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev;
        if len > 0 {
            let a = byte_at(self.cps, self.prev, self.text_len);
            let b = byte_at(self.cps, end, self.text_len);
            self.out.push(a..b);
        }
        self.prev = end;
        len
    }
}

/// GPT-2 pattern on code points `[ini, end)`: a port of `unicode_regex_split_custom_gpt2`.
fn split_gpt2(cps: &[Cp], ini: usize, end: usize, text_len: usize, out: &mut Vec<Range<usize>>) {
    // Class at `pos`, or None outside the segment (llama.cpp's empty flags).
    let class =
        |pos: usize| -> Option<CpClass> { (ini <= pos && pos < end).then(|| cps[pos].class) };
    let cpt = |pos: usize| -> Option<char> { (ini <= pos && pos < end).then(|| cps[pos].c) };
    let is_l = |c: Option<CpClass>| c == Some(CpClass::Letter);
    let is_n = |c: Option<CpClass>| c == Some(CpClass::Number);
    // [^\s\p{L}\p{N}] and inside the segment
    let is_other = |c: Option<CpClass>| matches!(c, Some(k) if k != CpClass::Whitespace && k != CpClass::Letter && k != CpClass::Number);
    let is_ws = |c: Option<CpClass>| c == Some(CpClass::Whitespace);

    let mut em = Emitter {
        cps,
        text_len,
        prev: ini,
        out,
    };
    let mut pos = ini;
    while pos < end {
        let c = cps[pos].c;
        let flags = Some(cps[pos].class);

        // 's|'t|'re|'ve|'m|'ll|'d
        if c == '\'' && pos + 1 < end {
            let n1 = cpt(pos + 1);
            if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
                pos += em.add(pos + 2);
                continue;
            }
            if pos + 2 < end {
                let n2 = cpt(pos + 2);
                if matches!(
                    (n1, n2),
                    (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
                ) {
                    pos += em.add(pos + 3);
                    continue;
                }
            }
        }

        let mut flags2 = if c == ' ' { class(pos + 1) } else { flags };
        // <space>?\p{L}+
        if is_l(flags2) {
            pos += (c == ' ') as usize;
            while is_l(flags2) {
                pos += 1;
                flags2 = class(pos);
            }
            em.add(pos);
            continue;
        }
        // <space>?\p{N}+
        if is_n(flags2) {
            pos += (c == ' ') as usize;
            while is_n(flags2) {
                pos += 1;
                flags2 = class(pos);
            }
            em.add(pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+
        if is_other(flags2) {
            pos += (c == ' ') as usize;
            while is_other(flags2) {
                pos += 1;
                flags2 = class(pos);
            }
            em.add(pos);
            continue;
        }

        let mut num_ws = 0;
        while is_ws(class(pos + num_ws)) {
            num_ws += 1;
        }
        // \s+(?!\S)
        if num_ws > 1 && cpt(pos + num_ws).is_some() {
            pos += num_ws - 1;
            em.add(pos);
            continue;
        }
        // \s+
        if num_ws > 0 {
            pos += num_ws;
            em.add(pos);
            continue;
        }
        // no match
        pos += 1;
        em.add(pos);
    }
}

/// Llama-3 pattern on code points `[ini, end)` with `\p{N}{1,max_digits}`: a port of
/// `unicode_regex_split_custom_llama3`. With `max_digits == 1` it is the Qwen2 pattern, which
/// llama.cpp runs through `std::regex`; the two agree because every code point is matched by
/// one of the alternatives, each of which is mirrored here in order.
fn split_llama3(
    cps: &[Cp],
    ini: usize,
    end: usize,
    text_len: usize,
    max_digits: usize,
    out: &mut Vec<Range<usize>>,
) {
    let class =
        |pos: usize| -> Option<CpClass> { (ini <= pos && pos < end).then(|| cps[pos].class) };
    let cpt = |pos: usize| -> Option<char> { (ini <= pos && pos < end).then(|| cps[pos].c) };
    let is_l = |c: Option<CpClass>| c == Some(CpClass::Letter);
    let is_n = |c: Option<CpClass>| c == Some(CpClass::Number);
    let is_ws = |c: Option<CpClass>| c == Some(CpClass::Whitespace);
    let not_wln = |c: Option<CpClass>| {
        !matches!(
            c,
            Some(CpClass::Whitespace | CpClass::Letter | CpClass::Number)
        )
    };
    let is_crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let lower = |c: Option<char>| c.map(|c| c.to_ascii_lowercase());

    let mut em = Emitter {
        cps,
        text_len,
        prev: ini,
        out,
    };
    let mut pos = ini;
    while pos < end {
        let c = cps[pos].c;
        let flags = Some(cps[pos].class);

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == '\'' && pos + 1 < end {
            let n1 = lower(cpt(pos + 1));
            if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
                pos += em.add(pos + 2);
                continue;
            }
            if pos + 2 < end {
                let n2 = lower(cpt(pos + 2));
                if matches!(
                    (n1, n2),
                    (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
                ) {
                    pos += em.add(pos + 3);
                    continue;
                }
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(c == '\r' || c == '\n' || is_n(flags)) && (is_l(flags) || is_l(class(pos + 1))) {
            pos += 1;
            while is_l(class(pos)) {
                pos += 1;
            }
            em.add(pos);
            continue;
        }

        // \p{N}{1,max_digits}
        if is_n(flags) {
            let mut ini_n = pos;
            while is_n(class(pos)) {
                pos += 1;
                if pos - ini_n >= max_digits {
                    em.add(pos);
                    ini_n = pos;
                }
            }
            em.add(pos);
            continue;
        }

        // <space>?[^\s\p{L}\p{N}]+[\r\n]*
        // (llama.cpp tests `flags`, not `flags2`, for being inside the segment; kept as is.)
        let mut flags2 = if c == ' ' { class(pos + 1) } else { flags };
        if not_wln(flags2) && flags.is_some() {
            pos += (c == ' ') as usize;
            while not_wln(flags2) && flags2.is_some() {
                pos += 1;
                flags2 = class(pos);
            }
            while is_crlf(cpt(pos)) {
                pos += 1;
            }
            em.add(pos);
            continue;
        }

        let mut num_ws = 0;
        let mut last_end_r_or_n = 0;
        while is_ws(class(pos + num_ws)) {
            if is_crlf(cpt(pos + num_ws)) {
                last_end_r_or_n = pos + num_ws + 1;
            }
            num_ws += 1;
        }
        // \s*[\r\n]+
        if last_end_r_or_n > 0 {
            pos = last_end_r_or_n;
            em.add(pos);
            continue;
        }
        // \s+(?!\S)
        if num_ws > 1 && cpt(pos + num_ws).is_some() {
            pos += num_ws - 1;
            em.add(pos);
            continue;
        }
        // \s+
        if num_ws > 0 {
            pos += num_ws;
            em.add(pos);
            continue;
        }
        pos += 1;
        em.add(pos);
    }
}

/// One regex of a multi-regex pre-tokenizer; each splits every segment of the previous one.
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// `[\p{P}\$\+<=>\^~\|]+` (collapsed by llama.cpp: any punctuation, or one of the listed
    /// ASCII symbols; with `backtick` also `` ` ``).
    PunctRuns { backtick: bool },
    /// The GPT-2 pattern.
    Gpt2,
    /// `\p{N}+`
    NumberRuns,
    /// `\p{N}`
    EachNumber,
    /// `[0-9][0-9][0-9]`: leftmost, non-overlapping triples of ASCII digits.
    DigitTriples,
    /// ` ?[^(\s|.,!?…。，、।۔،)]+`
    Bloom,
}

/// llama.cpp's default BPE pre-tokenizer.
const DEFAULT_STAGES: [Stage; 4] = [
    Stage::PunctRuns { backtick: false },
    Stage::Gpt2,
    Stage::NumberRuns,
    Stage::DigitTriples,
];
const FALCON_STAGES: [Stage; 3] = [
    Stage::PunctRuns { backtick: true },
    Stage::Gpt2,
    Stage::DigitTriples,
];

/// Run regex stages over the whole text; segments are code point ranges until the end.
fn split_stages(cps: &[Cp], text_len: usize, stages: &[Stage], out: &mut Vec<Range<usize>>) {
    let mut segs: Vec<Range<usize>> = Vec::with_capacity(1);
    segs.push(0..cps.len());
    let mut next: Vec<Range<usize>> = Vec::new();
    let mut bytes = Vec::new();
    for stage in stages {
        next.clear();
        for s in &segs {
            match *stage {
                Stage::PunctRuns { backtick } => {
                    let set = |cp: &Cp| {
                        cp.class == CpClass::Punct
                            || matches!(cp.c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                            || (backtick && cp.c == '`')
                    };
                    split_runs(cps, s.clone(), set, &mut next);
                }
                Stage::Gpt2 => {
                    // split_gpt2 emits byte ranges; map them back to code points.
                    bytes.clear();
                    split_gpt2(cps, s.start, s.end, text_len, &mut bytes);
                    let to_cp = |b: usize| cps.partition_point(|cp| (cp.off as usize) < b);
                    next.extend(bytes.iter().map(|r| to_cp(r.start)..to_cp(r.end)));
                }
                Stage::NumberRuns => {
                    split_runs(cps, s.clone(), |cp| cp.class == CpClass::Number, &mut next)
                }
                Stage::EachNumber => {
                    let mut gap = s.start;
                    for i in s.clone() {
                        if cps[i].class == CpClass::Number {
                            if gap < i {
                                next.push(gap..i);
                            }
                            next.push(i..i + 1);
                            gap = i + 1;
                        }
                    }
                    if gap < s.end {
                        next.push(gap..s.end);
                    }
                }
                Stage::DigitTriples => {
                    let mut gap = s.start;
                    let mut i = s.start;
                    while i + 3 <= s.end {
                        if cps[i..i + 3].iter().all(|cp| cp.c.is_ascii_digit()) {
                            if gap < i {
                                next.push(gap..i);
                            }
                            next.push(i..i + 3);
                            i += 3;
                            gap = i;
                        } else {
                            i += 1;
                        }
                    }
                    if gap < s.end {
                        next.push(gap..s.end);
                    }
                }
                Stage::Bloom => split_bloom(cps, s.clone(), &mut next),
            }
        }
        std::mem::swap(&mut segs, &mut next);
    }
    for s in segs {
        out.push(byte_at(cps, s.start, text_len)..byte_at(cps, s.end, text_len));
    }
}

/// ` ?[^(\s|.,!?…。，、।۔،)]+` (llama.cpp runs it through `std::wregex`, where `\s` inside the
/// brackets is whitespace; the brackets and `|` are literal members of the set).
fn split_bloom(cps: &[Cp], seg: Range<usize>, out: &mut Vec<Range<usize>>) {
    let ok = |i: usize| {
        i < seg.end
            && cps[i].class != CpClass::Whitespace
            && !matches!(
                cps[i].c,
                '(' | '|'
                    | '.'
                    | ','
                    | '!'
                    | '?'
                    | '…'
                    | '。'
                    | '，'
                    | '、'
                    | '।'
                    | '۔'
                    | '،'
                    | ')'
            )
    };
    let mut gap = seg.start;
    let mut i = seg.start;
    while i < seg.end {
        let start = i;
        let body = if cps[i].c == ' ' && ok(i + 1) {
            i + 1
        } else if ok(i) {
            i
        } else {
            i += 1;
            continue;
        };
        let mut j = body;
        while ok(j) {
            j += 1;
        }
        if gap < start {
            out.push(gap..start);
        }
        out.push(start..j);
        i = j;
        gap = j;
    }
    if gap < seg.end {
        out.push(gap..seg.end);
    }
}

/// `[set]+` as a splitting regex: runs of code points in the set and the gaps between them.
fn split_runs(
    cps: &[Cp],
    seg: Range<usize>,
    in_set: impl Fn(&Cp) -> bool,
    out: &mut Vec<Range<usize>>,
) {
    let mut start = seg.start;
    let mut i = seg.start;
    while i < seg.end {
        if in_set(&cps[i]) {
            let run_start = i;
            while i < seg.end && in_set(&cps[i]) {
                i += 1;
            }
            if start < run_start {
                out.push(start..run_start);
            }
            out.push(run_start..i);
            start = i;
        } else {
            i += 1;
        }
    }
    if start < seg.end {
        out.push(start..seg.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(p: PreTokenizer, text: &str) -> Vec<&str> {
        p.split(text)
    }

    #[test]
    fn gpt2_basic() {
        assert_eq!(
            words(PreTokenizer::Gpt2, "Hello world"),
            ["Hello", " world"]
        );
        assert_eq!(
            words(PreTokenizer::Gpt2, "it's  ok\n"),
            ["it", "'s", " ", " ok", "\n"]
        );
        assert_eq!(words(PreTokenizer::Gpt2, "a 123!!"), ["a", " 123", "!!"]);
        assert_eq!(words(PreTokenizer::Gpt2, "   "), ["   "]);
    }

    #[test]
    fn starcoder_digits() {
        assert_eq!(
            words(PreTokenizer::StarCoder, "abc 123"),
            ["abc", " ", "1", "2", "3"]
        );
    }

    #[test]
    fn llama3_and_qwen2() {
        assert_eq!(words(PreTokenizer::Llama3, "12345 x"), ["123", "45", " x"]);
        assert_eq!(words(PreTokenizer::Qwen2, "12 x"), ["1", "2", " x"]);
        assert_eq!(
            words(PreTokenizer::Qwen2, "I'M  here\r\n\n ok"),
            ["I", "'M", " ", " here", "\r\n\n", " ok"]
        );
        assert_eq!(
            words(PreTokenizer::Qwen2, "(hi) ..\n"),
            ["(hi", ")", " ..\n"]
        );
    }

    #[test]
    fn default_splits() {
        assert_eq!(
            words(PreTokenizer::Default, "a+b 1234"),
            ["a", "+", "b", " ", "123", "4"]
        );
    }
}
