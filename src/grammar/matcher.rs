//! Following text through a grammar: llama.cpp's pushdown stacks. A stack is a list of grammar
//! positions (rule, element), the top one a terminal (a character class or a token) that the
//! next input must match; the matcher keeps every stack the text so far allows. An empty stack
//! means the text may end here; no stacks means the text left the grammar.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Elem, Grammar};

/// A grammar position: (rule id, element index).
type Pos = (u32, u32);
type Stack = Vec<Pos>;

/// UTF-8 decoding state carried across tokens (a character split between two tokens):
/// the bits so far and how many continuation bytes are still due (-1: an invalid sequence).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Partial {
    value: u32,
    n_remain: i8,
}

impl Partial {
    /// Continuation bytes still due (0: none, -1: an invalid sequence).
    pub(super) fn n_remain(self) -> i8 {
        self.n_remain
    }
}

/// The state of matching text against a grammar.
#[derive(Clone, Debug)]
pub struct Matcher {
    g: Arc<Grammar>,
    stacks: Vec<Stack>,
    partial: Partial,
}

impl Matcher {
    /// At the start of the grammar's root rule.
    pub fn new(g: Arc<Grammar>) -> Matcher {
        let mut stacks = Vec::new();
        let root = g.root();
        let rule = &g.rules()[root as usize];
        let mut i = 0usize;
        loop {
            let mut stack = Vec::new();
            if !rule[i].ends_sequence() {
                stack.push((root, i as u32));
            }
            advance(&g, stack, &mut stacks);
            while !rule[i].ends_sequence() {
                i += 1;
            }
            if rule[i] == Elem::Alt {
                i += 1;
            } else {
                break;
            }
        }
        Matcher {
            g,
            stacks,
            partial: Partial::default(),
        }
    }

    pub fn grammar(&self) -> &Arc<Grammar> {
        &self.g
    }

    /// The same position in the same grammar (the same stacks and partial character).
    pub(super) fn same_state(&self, other: &Matcher) -> bool {
        Arc::ptr_eq(&self.g, &other.g)
            && self.partial == other.partial
            && self.stacks == other.stacks
    }

    pub(super) fn stacks(&self) -> &[Stack] {
        &self.stacks
    }

    pub(super) fn partial(&self) -> Partial {
        self.partial
    }

    /// The text so far may end here (some way through the grammar is complete).
    pub fn can_end(&self) -> bool {
        self.stacks.iter().any(|s| s.is_empty())
    }

    /// The text so far has left the grammar: nothing can follow.
    pub fn is_dead(&self) -> bool {
        self.stacks.is_empty()
    }

    /// Takes one code point; false when no way through the grammar allows it (the matcher is then
    /// dead).
    pub fn accept_char(&mut self, chr: u32) -> bool {
        let mut next = Vec::with_capacity(self.stacks.len());
        for st in &self.stacks {
            accept_char(&self.g, st, chr, &mut next);
        }
        self.stacks = next;
        !self.stacks.is_empty()
    }

    /// Takes text bytes (a token's piece), UTF-8 split across calls allowed; false when the text
    /// left the grammar.
    pub fn accept_bytes(&mut self, bytes: &[u8]) -> bool {
        let (cps, partial) = decode_utf8(bytes, self.partial);
        for &c in &cps {
            if !self.accept_char(c) {
                return false;
            }
        }
        self.partial = partial;
        !self.stacks.is_empty()
    }

    /// Takes token `id` whose text is `piece`: a stack waiting for a token (`<[id]>`) takes it
    /// by id, the others take its text. False when the token left the grammar.
    pub fn accept_token(&mut self, id: u32, piece: &[u8]) -> bool {
        let (cps, partial) = decode_utf8(piece, self.partial);
        let mut next = Vec::with_capacity(self.stacks.len());
        for st in &self.stacks {
            let Some(&top) = st.last() else { continue };
            match self.g.elem(top) {
                e @ (Elem::Token(_) | Elem::TokenNot(_)) => {
                    if match_token(e, id) {
                        let mut ns = st[..st.len() - 1].to_vec();
                        let after = (top.0, top.1 + 1);
                        if !self.g.elem(after).ends_sequence() {
                            ns.push(after);
                        }
                        advance(&self.g, ns, &mut next);
                    }
                }
                _ => {
                    let mut cur = vec![st.clone()];
                    for &c in &cps {
                        let mut n2 = Vec::new();
                        for s in &cur {
                            accept_char(&self.g, s, c, &mut n2);
                        }
                        cur = n2;
                        if cur.is_empty() {
                            break;
                        }
                    }
                    for s in cur {
                        if !next.contains(&s) {
                            next.push(s);
                        }
                    }
                }
            }
        }
        self.stacks = next;
        self.partial = partial;
        !self.stacks.is_empty()
    }

    /// Whether token `id` with text `piece` may come next: some stack takes all its complete
    /// characters and, if it ends inside a UTF-8 sequence, can take a character that completes it
    /// (llama.cpp's candidate rejection, for one token). An empty piece is refused (llama.cpp
    /// masks such tokens), as is text after a complete grammar.
    pub fn allows(&self, id: u32, piece: &[u8]) -> bool {
        if piece.is_empty() {
            return false;
        }
        let mut m = self.clone();
        if !m.accept_token(id, piece) {
            return false;
        }
        if m.partial.n_remain == 0 {
            return true;
        }
        can_complete(&m.g, &m.stacks, m.partial)
    }
}

/// Whether some stack's top character class can take a character that completes `partial`.
pub(super) fn can_complete(g: &Grammar, stacks: &[Stack], partial: Partial) -> bool {
    stacks.iter().any(|s| {
        s.last().is_some_and(|&top| {
            matches!(
                g.elem(top),
                Elem::Char(_) | Elem::CharNot(_) | Elem::CharAny
            ) && match_partial_char(g, top, partial)
        })
    })
}

/// Expands `stack` until every resulting stack is empty or has a terminal on top, adding the new
/// ones to `out` (llama.cpp's `llama_grammar_advance_stack`).
pub(super) fn advance(g: &Grammar, stack: Stack, out: &mut Vec<Stack>) {
    let mut todo = vec![stack];
    // The stacks already expanded: a short list searched linearly (a hash set costs more than
    // the handful of stacks an expansion usually visits), a set past 64.
    let mut seen: Vec<Stack> = Vec::new();
    let mut seen_set: HashSet<Stack> = HashSet::new();
    while let Some(cur) = todo.pop() {
        let known = if seen_set.is_empty() {
            seen.contains(&cur)
        } else {
            seen_set.contains(&cur)
        };
        if known {
            continue;
        }
        match cur.last() {
            None => {
                if !out.contains(&cur) {
                    out.push(cur.clone());
                }
            }
            Some(&top) => match g.elem(top) {
                Elem::RuleRef(r) => {
                    let rule = &g.rules()[r as usize];
                    let after = (top.0, top.1 + 1);
                    let mut i = 0usize;
                    loop {
                        let mut next: Stack = cur[..cur.len() - 1].to_vec();
                        if !g.elem(after).ends_sequence() {
                            next.push(after);
                        }
                        if !rule[i].ends_sequence() {
                            next.push((r, i as u32));
                        }
                        todo.push(next);
                        while !rule[i].ends_sequence() {
                            i += 1;
                        }
                        if rule[i] == Elem::Alt {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                }
                Elem::Char(_)
                | Elem::CharNot(_)
                | Elem::CharAny
                | Elem::Token(_)
                | Elem::TokenNot(_) => {
                    if !out.contains(&cur) {
                        out.push(cur.clone());
                    }
                }
                e => unreachable!("a stack never stops on {e:?}: the parser builds no such rule"),
            },
        }
        if seen_set.is_empty() && seen.len() < 64 {
            seen.push(cur);
        } else {
            seen_set.extend(seen.drain(..));
            seen_set.insert(cur);
        }
    }
}

/// The stacks `stack` becomes after code point `chr`, added to `out`.
pub(super) fn accept_char(g: &Grammar, stack: &Stack, chr: u32, out: &mut Vec<Stack>) {
    let Some(&top) = stack.last() else { return };
    if matches!(g.elem(top), Elem::Token(_) | Elem::TokenNot(_)) {
        return;
    }
    let (ok, next) = match_char(g, top, chr);
    if ok {
        let mut ns = stack[..stack.len() - 1].to_vec();
        if !g.elem(next).ends_sequence() {
            ns.push(next);
        }
        advance(g, ns, out);
    }
}

/// Whether `chr` satisfies the character class at `pos`, and the position after the class.
pub(super) fn match_char(g: &Grammar, pos: Pos, chr: u32) -> (bool, Pos) {
    let rule = &g.rules()[pos.0 as usize];
    let mut i = pos.1 as usize;
    let positive = !matches!(rule[i], Elem::CharNot(_));
    let mut found = false;
    loop {
        let lo = match rule[i] {
            Elem::Char(c) | Elem::CharNot(c) | Elem::CharAlt(c) => Some(c),
            _ => None,
        };
        match (rule[i], rule.get(i + 1)) {
            (Elem::CharAny, _) => {
                found = true;
                i += 1;
            }
            (_, Some(&Elem::CharRngUpper(hi))) => {
                let lo = lo.expect("a range starts with a character");
                found |= lo <= chr && chr <= hi;
                i += 2;
            }
            _ => {
                found |= lo == Some(chr);
                i += 1;
            }
        }
        if !matches!(rule.get(i), Some(Elem::CharAlt(_))) {
            break;
        }
    }
    (found == positive, (pos.0, i as u32))
}

/// Whether some completion of the partial UTF-8 sequence could satisfy the class at `pos`.
pub(super) fn match_partial_char(g: &Grammar, pos: Pos, partial: Partial) -> bool {
    let rule = &g.rules()[pos.0 as usize];
    let mut i = pos.1 as usize;
    let positive = !matches!(rule[i], Elem::CharNot(_));
    let n = partial.n_remain as i32;
    // Invalid, or a 7-bit character split across 2 bytes (overlong).
    if n < 0 || (n == 1 && partial.value < 2) {
        return false;
    }
    let mut low = partial.value << (n * 6);
    let high = low | ((1u32 << (n * 6)) - 1);
    if low == 0 {
        if n == 2 {
            low = 1 << 11;
        } else if n == 3 {
            low = 1 << 16;
        }
    }
    loop {
        let c = match rule[i] {
            Elem::Char(c) | Elem::CharNot(c) | Elem::CharAlt(c) => c,
            Elem::CharAny => return true,
            _ => return !positive,
        };
        if let Some(&Elem::CharRngUpper(hi)) = rule.get(i + 1) {
            if c <= high && low <= hi {
                return positive;
            }
            i += 2;
        } else {
            if low <= c && c <= high {
                return positive;
            }
            i += 1;
        }
        if !matches!(rule.get(i), Some(Elem::CharAlt(_))) {
            return !positive;
        }
    }
}

pub(super) fn match_token(e: Elem, id: u32) -> bool {
    match e {
        Elem::Token(t) => t == id,
        Elem::TokenNot(t) => t != id,
        _ => false,
    }
}

/// Decodes `src` continuing from `partial`: the complete code points and the state after the
/// last byte (llama.cpp's `decode_utf8`: an invalid sequence yields no code points and state -1).
pub(super) fn decode_utf8(src: &[u8], partial: Partial) -> (Vec<u32>, Partial) {
    const LEN: [i8; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4];
    let mut out = Vec::with_capacity(src.len());
    let mut value = partial.value;
    let mut n_remain = partial.n_remain;
    let mut pos = 0;
    while pos < src.len() && n_remain > 0 {
        let b = src[pos];
        if b >> 6 != 2 {
            return (
                Vec::new(),
                Partial {
                    value: 0,
                    n_remain: -1,
                },
            );
        }
        value = (value << 6) + (b & 0x3F) as u32;
        pos += 1;
        n_remain -= 1;
    }
    if partial.n_remain > 0 && n_remain == 0 {
        out.push(value);
    }
    while pos < src.len() {
        let first = src[pos];
        n_remain = LEN[(first >> 4) as usize] - 1;
        if n_remain < 0 {
            return (Vec::new(), Partial { value: 0, n_remain });
        }
        value = (first & ((1u8 << (7 - n_remain)) - 1)) as u32;
        pos += 1;
        while pos < src.len() && n_remain > 0 {
            value = (value << 6) + (src[pos] & 0x3F) as u32;
            pos += 1;
            n_remain -= 1;
        }
        if n_remain == 0 {
            out.push(value);
        }
    }
    (out, Partial { value, n_remain })
}
