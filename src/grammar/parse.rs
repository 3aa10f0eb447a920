//! The GBNF reader: llama.cpp's grammar syntax and its rewriting of groups and repetitions into
//! numbered rules (`name_N`), so that rule ids agree with llama.cpp's parser.

use std::collections::HashMap;

use super::{Elem, GrammarError, VocabLookup};

/// Most rules one repetition may expand to (llama.cpp's `MAX_REPETITION_THRESHOLD`): `{m}` with a
/// larger m is an error, a larger upper bound means "no bound", and nested repetitions whose
/// product exceeds it are an error (they would blow up the rule set).
const MAX_REPETITIONS: u64 = 2000;

type Rules = Vec<Vec<Elem>>;

/// Parses `src` into rules by id and the symbol table (names in first-seen order).
pub(super) fn parse(
    src: &str,
    vocab: Option<VocabLookup<'_>>,
) -> Result<(Rules, Vec<(String, u32)>), GrammarError> {
    let mut p = Parser {
        src,
        b: src.as_bytes(),
        ids: HashMap::new(),
        symbols: Vec::new(),
        first_use: Vec::new(),
        rules: Vec::new(),
        vocab,
    };
    let mut pos = p.space(0, true);
    while pos < p.b.len() {
        pos = p.rule(pos)?;
    }
    // Every referenced rule must be defined.
    for (id, rule) in p.rules.iter().enumerate() {
        if rule.is_empty() {
            return Err(p.undefined(id as u32));
        }
    }
    for rule in &p.rules {
        for e in rule {
            if let Elem::RuleRef(r) = *e {
                if p.rules.get(r as usize).is_none_or(|x| x.is_empty()) {
                    return Err(p.undefined(r));
                }
            }
        }
    }
    Ok((p.rules, p.symbols))
}

struct Parser<'a, 'v> {
    src: &'a str,
    b: &'a [u8],
    ids: HashMap<String, u32>,
    symbols: Vec<(String, u32)>,
    /// Byte offset where each symbol id was first seen (for "undefined rule" errors).
    first_use: Vec<usize>,
    rules: Rules,
    vocab: Option<VocabLookup<'v>>,
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

impl Parser<'_, '_> {
    fn at(&self, pos: usize) -> u8 {
        self.b.get(pos).copied().unwrap_or(0)
    }

    /// An error at byte offset `pos`: line and column (in characters) from 1.
    fn err(&self, pos: usize, msg: impl Into<String>) -> GrammarError {
        let (line, col) = self.line_col(pos);
        GrammarError::Syntax {
            line,
            col,
            msg: msg.into(),
        }
    }

    fn undefined(&self, id: u32) -> GrammarError {
        let name = self
            .symbols
            .iter()
            .find(|&&(_, i)| i == id)
            .map_or("?", |(n, _)| n.as_str());
        let at = self.first_use.get(id as usize).copied().unwrap_or(0);
        self.err(at, format!("undefined rule '{name}'"))
    }

    /// What follows `pos`, for error messages.
    fn near(&self, pos: usize) -> String {
        let rest = &self.src[floor_char(self.src, pos.min(self.b.len()))..];
        match rest.chars().next() {
            None => "end of input".to_string(),
            Some(_) => {
                let s: String = rest.chars().take(12).collect();
                format!("'{}'", s.escape_debug())
            }
        }
    }

    /// Skips blanks and `#` comments (and newlines when `newline_ok`).
    fn space(&self, mut pos: usize, newline_ok: bool) -> usize {
        loop {
            match self.at(pos) {
                b' ' | b'\t' => pos += 1,
                b'\r' | b'\n' if newline_ok => pos += 1,
                b'#' => {
                    while !matches!(self.at(pos), 0 | b'\r' | b'\n') {
                        pos += 1;
                    }
                }
                _ => return pos,
            }
        }
    }

    fn name_end(&self, pos: usize) -> Result<usize, GrammarError> {
        let mut end = pos;
        while is_word(self.at(end)) {
            end += 1;
        }
        if end == pos {
            return Err(self.err(
                pos,
                format!("expected a rule name, found {}", self.near(pos)),
            ));
        }
        Ok(end)
    }

    fn int(&self, pos: usize) -> Result<(u64, usize), GrammarError> {
        let mut end = pos;
        while self.at(end).is_ascii_digit() {
            end += 1;
        }
        if end == pos {
            return Err(self.err(
                pos,
                format!("expected an integer, found {}", self.near(pos)),
            ));
        }
        let v = self.src[pos..end]
            .parse::<u64>()
            .map_err(|_| self.err(pos, "integer too large"))?;
        Ok((v, end))
    }

    fn symbol_id(&mut self, name: &str, at: usize) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.symbols.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.symbols.push((name.to_string(), id));
        self.first_use.push(at);
        id
    }

    /// A new rule `base_N` (N its id), as llama.cpp names the rules it makes.
    fn new_symbol(&mut self, base: &str, at: usize) -> u32 {
        let id = self.symbols.len() as u32;
        let name = format!("{base}_{id}");
        self.ids.insert(name.clone(), id);
        self.symbols.push((name, id));
        self.first_use.push(at);
        id
    }

    fn add_rule(&mut self, id: u32, rule: Vec<Elem>) {
        let id = id as usize;
        if self.rules.len() <= id {
            self.rules.resize(id + 1, Vec::new());
        }
        self.rules[id] = rule;
    }

    /// One character of a literal or class: an escape or a UTF-8 code point.
    fn char(&self, pos: usize) -> Result<(u32, usize), GrammarError> {
        match self.at(pos) {
            0 if pos >= self.b.len() => Err(self.err(pos, "unexpected end of input")),
            b'\\' => {
                let hex = |n: usize| -> Result<(u32, usize), GrammarError> {
                    let s = self
                        .src
                        .get(pos + 2..pos + 2 + n)
                        .filter(|s| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit()));
                    match s {
                        Some(s) => {
                            Ok((u32::from_str_radix(s, 16).expect("hex digits"), pos + 2 + n))
                        }
                        None => Err(self.err(
                            pos,
                            format!(
                                "expected {n} hex digits after '\\{}'",
                                self.at(pos + 1) as char
                            ),
                        )),
                    }
                };
                match self.at(pos + 1) {
                    b'x' => hex(2),
                    b'u' => hex(4),
                    b'U' => hex(8),
                    b't' => Ok(('\t' as u32, pos + 2)),
                    b'r' => Ok(('\r' as u32, pos + 2)),
                    b'n' => Ok(('\n' as u32, pos + 2)),
                    c @ (b'\\' | b'"' | b'[' | b']' | b'-') => Ok((c as u32, pos + 2)),
                    _ => Err(self.err(pos, format!("unknown escape {}", self.near(pos)))),
                }
            }
            _ => {
                let c = self.src[pos..].chars().next().expect("inside the text");
                Ok((c as u32, pos + c.len_utf8()))
            }
        }
    }

    /// `<[id]>` or `<text>` (one token of the vocabulary).
    fn token(&self, pos: usize) -> Result<(u32, usize), GrammarError> {
        debug_assert_eq!(self.at(pos), b'<');
        if self.at(pos + 1) == b'[' {
            let (id, end) = self.int(pos + 2)?;
            let id = u32::try_from(id).map_err(|_| self.err(pos + 2, "token id too large"))?;
            if self.at(end) != b']' {
                return Err(self.err(end, format!("expected ']', found {}", self.near(end))));
            }
            if self.at(end + 1) != b'>' {
                return Err(self.err(
                    end + 1,
                    format!("expected '>', found {}", self.near(end + 1)),
                ));
            }
            return Ok((id, end + 2));
        }
        let Some(close) = self.src[pos..].find('>') else {
            return Err(self.err(pos, "expected '>' closing the token"));
        };
        let text = &self.src[pos..pos + close + 1];
        let Some(vocab) = self.vocab else {
            return Err(self.err(
                pos,
                format!("token {text} needs a model's vocabulary (use <[id]> without one)"),
            ));
        };
        match vocab(text) {
            Some(id) => Ok((id, pos + close + 1)),
            None => Err(self.err(pos, format!("{text} is not one token of this model"))),
        }
    }

    /// `name ::= alternatives` and the line end.
    fn rule(&mut self, pos: usize) -> Result<usize, GrammarError> {
        let name_end = self.name_end(pos)?;
        let name = self.src[pos..name_end].to_string();
        let id = self.symbol_id(&name, pos);
        let p = self.space(name_end, false);
        if !self.src[p..].starts_with("::=") {
            return Err(self.err(
                p,
                format!(
                    "expected '::=' after rule name '{name}', found {}",
                    self.near(p)
                ),
            ));
        }
        let p = self.space(p + 3, true);
        let p = self.alternates(p, &name, id, false)?;
        let p = match self.at(p) {
            b'\r' if self.at(p + 1) == b'\n' => p + 2,
            b'\r' | b'\n' => p + 1,
            _ if p >= self.b.len() => p,
            _ => {
                return Err(self.err(
                    p,
                    format!("expected a new line or the end, found {}", self.near(p)),
                ))
            }
        };
        Ok(self.space(p, true))
    }

    fn alternates(
        &mut self,
        pos: usize,
        name: &str,
        id: u32,
        nested: bool,
    ) -> Result<usize, GrammarError> {
        let mut rule = Vec::new();
        let mut p = self.sequence(pos, name, &mut rule, nested)?;
        while self.at(p) == b'|' {
            rule.push(Elem::Alt);
            p = self.space(p + 1, true);
            p = self.sequence(p, name, &mut rule, nested)?;
        }
        rule.push(Elem::End);
        self.add_rule(id, rule);
        Ok(p)
    }

    fn sequence(
        &mut self,
        pos: usize,
        name: &str,
        rule: &mut Vec<Elem>,
        nested: bool,
    ) -> Result<usize, GrammarError> {
        let mut last_start = rule.len();
        let mut n_prev_rules: u64 = 1;
        let mut p = pos;
        while p < self.b.len() {
            match self.at(p) {
                b'"' => {
                    p += 1;
                    last_start = rule.len();
                    n_prev_rules = 1;
                    while self.at(p) != b'"' {
                        if p >= self.b.len() {
                            return Err(self.err(pos, "unterminated string literal"));
                        }
                        let (c, next) = self.char(p)?;
                        rule.push(Elem::Char(c));
                        p = next;
                    }
                    p = self.space(p + 1, nested);
                }
                b'[' => {
                    let open = p;
                    p += 1;
                    let negated = self.at(p) == b'^';
                    if negated {
                        p += 1;
                    }
                    last_start = rule.len();
                    n_prev_rules = 1;
                    while self.at(p) != b']' {
                        if p >= self.b.len() {
                            return Err(self.err(open, "unterminated character class"));
                        }
                        let (c, next) = self.char(p)?;
                        p = next;
                        rule.push(if last_start < rule.len() {
                            Elem::CharAlt(c)
                        } else if negated {
                            Elem::CharNot(c)
                        } else {
                            Elem::Char(c)
                        });
                        if self.at(p) == b'-' && self.at(p + 1) != b']' {
                            if p + 1 >= self.b.len() {
                                return Err(self.err(open, "unterminated character class"));
                            }
                            let (hi, next) = self.char(p + 1)?;
                            p = next;
                            rule.push(Elem::CharRngUpper(hi));
                        }
                    }
                    p = self.space(p + 1, nested);
                }
                b'<' | b'!' => {
                    let not = self.at(p) == b'!';
                    let start = if not { p + 1 } else { p };
                    if self.at(start) != b'<' {
                        return Err(self.err(
                            start,
                            format!("expected '<' after '!', found {}", self.near(start)),
                        ));
                    }
                    let (id, end) = self.token(start)?;
                    last_start = rule.len();
                    n_prev_rules = 1;
                    rule.push(if not {
                        Elem::TokenNot(id)
                    } else {
                        Elem::Token(id)
                    });
                    p = self.space(end, nested);
                }
                c if is_word(c) => {
                    let end = self.name_end(p)?;
                    let src = self.src;
                    let id = self.symbol_id(&src[p..end], p);
                    p = self.space(end, nested);
                    last_start = rule.len();
                    n_prev_rules = 1;
                    rule.push(Elem::RuleRef(id));
                }
                b'(' => {
                    let open = p;
                    p = self.space(p + 1, true);
                    let before = self.symbols.len() as u64;
                    let sub = self.new_symbol(name, open);
                    p = self.alternates(p, name, sub, true)?;
                    n_prev_rules = (self.symbols.len() as u64 - before).max(1);
                    last_start = rule.len();
                    rule.push(Elem::RuleRef(sub));
                    if self.at(p) != b')' {
                        let (l, c) = self.line_col(open);
                        return Err(self.err(
                            p,
                            format!(
                                "expected ')' closing the group opened at line {l}, column {c}, \
                                 found {}",
                                self.near(p)
                            ),
                        ));
                    }
                    p = self.space(p + 1, nested);
                }
                b'.' => {
                    last_start = rule.len();
                    n_prev_rules = 1;
                    rule.push(Elem::CharAny);
                    p = self.space(p + 1, nested);
                }
                op @ (b'*' | b'+' | b'?') => {
                    let at = p;
                    p = self.space(p + 1, nested);
                    let (min, max) = match op {
                        b'*' => (0, None),
                        b'+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repeat(at, name, rule, last_start, &mut n_prev_rules, min, max)?;
                }
                b'{' => {
                    let at = p;
                    p = self.space(p + 1, nested);
                    if !self.at(p).is_ascii_digit() {
                        return Err(self.err(
                            p,
                            format!("expected a count after '{{', found {}", self.near(p)),
                        ));
                    }
                    let (min, end) = self.int(p)?;
                    p = self.space(end, nested);
                    let max = match self.at(p) {
                        b'}' => {
                            p = self.space(p + 1, nested);
                            Some(min)
                        }
                        b',' => {
                            p = self.space(p + 1, nested);
                            let mut max = None;
                            if self.at(p).is_ascii_digit() {
                                let (m, end) = self.int(p)?;
                                max = Some(m);
                                p = self.space(end, nested);
                            }
                            if self.at(p) != b'}' {
                                return Err(
                                    self.err(p, format!("expected '}}', found {}", self.near(p)))
                                );
                            }
                            p = self.space(p + 1, nested);
                            max
                        }
                        _ => {
                            return Err(self
                                .err(p, format!("expected ',' or '}}', found {}", self.near(p))))
                        }
                    };
                    if min > MAX_REPETITIONS {
                        return Err(self.err(
                            at,
                            format!("{min} repetitions is more than the {MAX_REPETITIONS} allowed"),
                        ));
                    }
                    if let Some(m) = max {
                        if m < min {
                            return Err(self.err(
                                at,
                                format!(
                                    "repetition {{{min},{m}}}: the maximum is below the minimum"
                                ),
                            ));
                        }
                    }
                    let max = max.filter(|&m| m <= MAX_REPETITIONS);
                    self.repeat(at, name, rule, last_start, &mut n_prev_rules, min, max)?;
                }
                _ => break,
            }
        }
        Ok(p)
    }

    /// 1-based line and column (in characters) of byte offset `pos`.
    fn line_col(&self, pos: usize) -> (usize, usize) {
        let before = &self.src[..floor_char(self.src, pos)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, col)
    }

    /// Rewrites the item at `rule[last_start..]` repeated min..=max times (max None: no bound):
    /// S{m,n} -> S x m, then S'(n-m) where S'(k) ::= S S'(k-1) | (empty), S'(1) ::= S | (empty);
    /// S{m,} -> S x m, then S' ::= S S' | (empty). Same rule order and names as llama.cpp.
    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &mut self,
        at: usize,
        name: &str,
        rule: &mut Vec<Elem>,
        last_start: usize,
        n_prev_rules: &mut u64,
        min: u64,
        max: Option<u64>,
    ) -> Result<(), GrammarError> {
        if last_start == rule.len() {
            return Err(self.err(
                at,
                "a repetition ('*', '+', '?', '{') with nothing before it to repeat",
            ));
        }
        let prev: Vec<Elem> = rule[last_start..].to_vec();
        let total = match max {
            Some(m) if m > 0 => m,
            _ if min > 0 => min,
            _ => 1,
        };
        if n_prev_rules.saturating_mul(total) > MAX_REPETITIONS {
            return Err(self.err(
                at,
                format!("nested repetitions expand to more than {MAX_REPETITIONS} copies"),
            ));
        }
        if min == 0 {
            rule.truncate(last_start);
        } else {
            for _ in 1..min {
                rule.extend_from_slice(&prev);
            }
        }
        let n_opt = match max {
            None => 1,
            Some(m) => m - min,
        };
        let mut last_rec = 0u32;
        for i in 0..n_opt {
            let rec_id = self.new_symbol(name, at);
            let mut rec = prev.clone();
            if i > 0 || max.is_none() {
                rec.push(Elem::RuleRef(if max.is_none() { rec_id } else { last_rec }));
            }
            rec.push(Elem::Alt);
            rec.push(Elem::End);
            self.add_rule(rec_id, rec);
            last_rec = rec_id;
        }
        if n_opt > 0 {
            rule.push(Elem::RuleRef(last_rec));
        }
        *n_prev_rules *= total;
        Ok(())
    }
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
