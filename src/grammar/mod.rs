//! GBNF grammars, as llama.cpp reads and applies them (its `--grammar`): the same syntax (rules,
//! alternatives, groups, `*` `+` `?` `{m,n}`, literals, character classes with ranges and
//! negation, `.`, `<[id]>` / `!<[id]>` tokens, `#` comments), the same rewriting of repetitions
//! into rules (so rule numbers match llama.cpp's parser, which tests/grammar.rs checks), and the
//! same pushdown matching: a set of stacks of grammar positions, each stack one way the text so
//! far can continue.
//!
//! - [`Grammar::parse`] reads GBNF; a bad grammar is a [`GrammarError`] naming the line and column.
//! - [`Matcher`] follows the text: [`Matcher::accept_bytes`] takes a token's bytes (UTF-8 may
//!   be split across tokens), [`Matcher::can_end`] says whether the text may stop here.
//! - [`schema_to_gbnf`] makes the grammar of a JSON Schema.
//! - [`Constraint`] steers a [`crate::sampler::Sampler`] to the tokens the grammar allows
//!   ([`crate::sampler::Sampler::set_grammar`]).

mod constrain;
mod matcher;
mod parse;
mod schema;

pub use constrain::{Constraint, TokenTable};
pub use schema::{schema_to_gbnf, SchemaError};

/// Resolves a `<token>` reference in a grammar to the token id its text is (None: not one token).
pub type VocabLookup<'a> = &'a dyn Fn(&str) -> Option<u32>;
pub use matcher::Matcher;

/// One element of a rule, as llama.cpp's `llama_grammar_element`. A rule is a sequence of
/// alternatives separated by [`Elem::Alt`], ended by [`Elem::End`]; a character class is its first
/// element ([`Elem::Char`], or [`Elem::CharNot`] when negated) followed by [`Elem::CharAlt`] for
/// each further character and [`Elem::CharRngUpper`] after the lower end of a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    /// End of the rule.
    End,
    /// Start of another alternative.
    Alt,
    /// A reference to rule `id`.
    RuleRef(u32),
    /// A code point (or the first of a class).
    Char(u32),
    /// The first code point of a negated class `[^...]`.
    CharNot(u32),
    /// The upper end of the range whose lower end precedes it.
    CharRngUpper(u32),
    /// A further code point of a class.
    CharAlt(u32),
    /// `.`: any code point.
    CharAny,
    /// `<[id]>`: exactly this token.
    Token(u32),
    /// `!<[id]>`: any token but this one.
    TokenNot(u32),
}

impl Elem {
    /// llama.cpp's name for the element type (`LLAMA_GRETYPE_*` without the prefix) and its value.
    pub fn llama_name(self) -> (&'static str, u32) {
        match self {
            Elem::End => ("END", 0),
            Elem::Alt => ("ALT", 0),
            Elem::RuleRef(v) => ("RULE_REF", v),
            Elem::Char(v) => ("CHAR", v),
            Elem::CharNot(v) => ("CHAR_NOT", v),
            Elem::CharRngUpper(v) => ("CHAR_RNG_UPPER", v),
            Elem::CharAlt(v) => ("CHAR_ALT", v),
            Elem::CharAny => ("CHAR_ANY", 0),
            Elem::Token(v) => ("TOKEN", v),
            Elem::TokenNot(v) => ("TOKEN_NOT", v),
        }
    }

    /// End of an alternative.
    fn ends_sequence(self) -> bool {
        matches!(self, Elem::End | Elem::Alt)
    }
}

/// A parsed grammar: its rules by id and the start rule.
#[derive(Clone, Debug)]
pub struct Grammar {
    /// Rule id -> its elements (alternatives separated by `Alt`, ended by `End`).
    rules: Vec<Vec<Elem>>,
    /// Symbol names and ids in the order they were first seen (named rules and the `name_N`
    /// rules made for groups and repetitions).
    symbols: Vec<(String, u32)>,
    /// The start rule.
    root: u32,
}

/// Why a grammar could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// A syntax error, at a 1-based line and column (in characters).
    #[error("grammar line {line}, column {col}: {msg}")]
    Syntax {
        line: usize,
        col: usize,
        msg: String,
    },
    /// The start rule is not defined.
    #[error("grammar has no rule named '{0}' to start from")]
    NoRoot(String),
    /// A rule can start with itself without consuming text: matching would never end.
    #[error("grammar rule '{0}' is left-recursive (it can start with itself)")]
    LeftRecursion(String),
}

impl Grammar {
    /// Parses GBNF text, starting from the rule named `root`.
    pub fn parse(src: &str) -> Result<Grammar, GrammarError> {
        Grammar::parse_with_root(src, "root", None)
    }

    /// Parses GBNF text starting from rule `root`; `vocab` resolves `<token>` references by text
    /// (`<[id]>` references need none).
    pub fn parse_with_root(
        src: &str,
        root: &str,
        vocab: Option<VocabLookup<'_>>,
    ) -> Result<Grammar, GrammarError> {
        let (rules, symbols) = parse::parse(src, vocab)?;
        let root_id = symbols
            .iter()
            .find(|(n, _)| n == root)
            .map(|&(_, id)| id)
            .filter(|&id| rules.get(id as usize).is_some_and(|r| !r.is_empty()))
            .ok_or_else(|| GrammarError::NoRoot(root.to_string()))?;
        let g = Grammar {
            rules,
            symbols,
            root: root_id,
        };
        g.check_left_recursion()?;
        Ok(g)
    }

    /// Rule id -> elements.
    pub fn rules(&self) -> &[Vec<Elem>] {
        &self.rules
    }

    /// Symbol names and ids in the order they were first seen.
    pub fn symbols(&self) -> &[(String, u32)] {
        &self.symbols
    }

    /// The start rule's id.
    pub fn root(&self) -> u32 {
        self.root
    }

    /// A symbol's name.
    fn name(&self, id: u32) -> &str {
        self.symbols
            .iter()
            .find(|&&(_, i)| i == id)
            .map_or("?", |(n, _)| n.as_str())
    }

    #[inline]
    fn elem(&self, (rule, i): (u32, u32)) -> Elem {
        self.rules[rule as usize][i as usize]
    }

    /// Refuses rules that can reach themselves at their start without consuming a character
    /// (llama.cpp's `llama_grammar_detect_left_recursion`).
    fn check_left_recursion(&self) -> Result<(), GrammarError> {
        let n = self.rules.len();
        let (mut visited, mut in_progress, mut may_be_empty) =
            (vec![false; n], vec![false; n], vec![false; n]);
        for i in 0..n {
            if visited[i] {
                continue;
            }
            if let Some(r) =
                self.left_recursive(i, &mut visited, &mut in_progress, &mut may_be_empty)
            {
                return Err(GrammarError::LeftRecursion(self.name(r as u32).to_string()));
            }
        }
        Ok(())
    }

    /// Depth-first over the leftmost references of rule `i`; the rule found in progress again.
    fn left_recursive(
        &self,
        i: usize,
        visited: &mut [bool],
        in_progress: &mut [bool],
        may_be_empty: &mut [bool],
    ) -> Option<usize> {
        if in_progress[i] {
            return Some(i);
        }
        in_progress[i] = true;
        let rule = &self.rules[i];
        // An alternative with nothing before its end makes the rule nullable.
        let mut at_start = true;
        for e in rule {
            if e.ends_sequence() {
                if at_start {
                    may_be_empty[i] = true;
                    break;
                }
                at_start = true;
            } else {
                at_start = false;
            }
        }
        let mut leftmost = true;
        for e in rule {
            match *e {
                Elem::RuleRef(r) if leftmost => {
                    let r = r as usize;
                    if let Some(found) = self.left_recursive(r, visited, in_progress, may_be_empty)
                    {
                        return Some(found);
                    }
                    if !may_be_empty[r] {
                        leftmost = false;
                    }
                }
                e if e.ends_sequence() => leftmost = true,
                _ => leftmost = false,
            }
        }
        in_progress[i] = false;
        visited[i] = true;
        None
    }
}
