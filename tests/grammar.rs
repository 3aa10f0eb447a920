//! GBNF grammars against llama.cpp's own grammar tests: tests/data/grammar/llamacpp-parser.json
//! (from its tests/test-grammar-parser.cpp: the rules each grammar parses into, symbol ids and
//! elements, and the grammars that must not parse) and llamacpp-integration.json (from
//! tests/test-grammar-integration.cpp: which strings each grammar accepts and rejects, and the
//! grammars that must not build; and for 33 JSON Schemas, which JSON texts the grammar made from
//! each accepts and rejects). Both extracted from the llama.cpp in llama-cpp-python 0.3.36 by
//! scripts/extract-grammar-tests.py.

mod common;

use std::sync::Arc;

use ferrolm::grammar::{Elem, Grammar, GrammarError, Matcher};
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(common::data(&format!("grammar/{name}"))).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn parser_matches_llamacpp_rules() {
    let cases = load("llamacpp-parser.json");
    let (mut parsed, mut failed) = (0, 0);
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        if c["fails"].as_bool() == Some(true) {
            assert!(Grammar::parse(text).is_err(), "should not parse:\n{text}");
            failed += 1;
            continue;
        }
        let g = Grammar::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // llama.cpp lists symbols from a std::map: by name.
        let mut got: Vec<(String, u32)> = g.symbols().to_vec();
        got.sort();
        let mut want: Vec<(String, u32)> = c["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s[0].as_str().unwrap().to_string(),
                    s[1].as_u64().unwrap() as u32,
                )
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "symbols of\n{text}");
        let got: Vec<(&str, u32)> = g.rules().iter().flatten().map(|e| e.llama_name()).collect();
        let want: Vec<(&str, u32)> = c["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_str().unwrap(), r[1].as_u64().unwrap() as u32))
            .collect();
        assert_eq!(got, want, "rules of\n{text}");
        parsed += 1;
    }
    assert!(
        parsed >= 15 && failed >= 5,
        "{parsed} parsed, {failed} failures"
    );
}

/// Feeds a test string as llama.cpp's test does: each character as a piece of "token 0", each
/// `token(id)` marker as that token; true when the grammar accepts the whole string.
fn matches(g: &Arc<Grammar>, pieces: &Value) -> bool {
    let mut m = Matcher::new(Arc::clone(g));
    for p in pieces.as_array().unwrap() {
        if let Some(id) = p["token"].as_u64() {
            if !m.accept_token(id as u32, format!("<[{id}]>").as_bytes()) {
                return false;
            }
        } else {
            for c in p["text"].as_str().unwrap().chars() {
                let mut b = [0u8; 4];
                if !m.accept_token(0, c.encode_utf8(&mut b).as_bytes()) {
                    return false;
                }
            }
        }
    }
    m.can_end()
}

#[test]
fn integration_strings_match_as_in_llamacpp() {
    let cases = load("llamacpp-integration.json");
    let (mut strings, mut schemas) = (0, 0);
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        match c["kind"].as_str().unwrap() {
            "grammar" => {
                let g = Arc::new(Grammar::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}")));
                for s in c["pass"].as_array().unwrap() {
                    assert!(matches(&g, s), "{}: should accept {s}", c["desc"]);
                    strings += 1;
                }
                for s in c["fail"].as_array().unwrap() {
                    assert!(!matches(&g, s), "{}: should reject {s}", c["desc"]);
                    strings += 1;
                }
            }
            "grammar-fails" => {
                let e = Grammar::parse(text).unwrap_err();
                assert!(
                    matches!(e, GrammarError::LeftRecursion(_)),
                    "{e} for\n{text}"
                );
            }
            "root" => {
                let root = c["root"].as_str().unwrap();
                let built = Grammar::parse_with_root(text, root, None);
                assert_eq!(
                    built.is_ok(),
                    c["builds"].as_bool().unwrap(),
                    "root {root}:\n{text}"
                );
            }
            "schema" => {
                let schema: Value = serde_json::from_str(text).unwrap();
                let gbnf = ferrolm::grammar::schema_to_gbnf(&schema)
                    .unwrap_or_else(|e| panic!("{}: {e}", c["desc"]));
                let g = Arc::new(
                    Grammar::parse(&gbnf).unwrap_or_else(|e| panic!("{}: {e}\n{gbnf}", c["desc"])),
                );
                for s in c["pass"].as_array().unwrap() {
                    assert!(matches(&g, s), "{}: should accept {s}\n{gbnf}", c["desc"]);
                    strings += 1;
                }
                for s in c["fail"].as_array().unwrap() {
                    assert!(!matches(&g, s), "{}: should reject {s}\n{gbnf}", c["desc"]);
                    strings += 1;
                }
                schemas += 1;
            }
            k => panic!("unknown case kind {k}"),
        }
    }
    assert!(
        strings >= 300 && schemas >= 30,
        "{strings} strings, {schemas} schemas checked"
    );
}

/// Errors name the line and column of the problem.
#[test]
fn errors_point_at_line_and_column() {
    let cases = [
        (
            "root ::= \"a\"\nfoo ::= [a-z",
            2,
            9,
            "unterminated character class",
        ),
        ("root ::= x\n", 1, 10, "undefined rule 'x'"),
        (
            "root ::= \"a\" |\n  ( \"b\" \n",
            3,
            1,
            "expected ')' closing the group opened at line 2, column 3",
        ),
        ("root ::= \"\\q\"", 1, 11, "unknown escape"),
        ("root := \"a\"", 1, 6, "expected '::='"),
        ("root ::= *", 1, 10, "nothing before it"),
        ("root ::= \"é\" {3,2}", 1, 14, "below the minimum"),
    ];
    for (src, line, col, msg) in cases {
        match Grammar::parse(src) {
            Err(GrammarError::Syntax {
                line: l,
                col: c,
                msg: m,
            }) => {
                assert_eq!((l, c), (line, col), "{src:?}: {m}");
                assert!(m.contains(msg), "{src:?}: {m}");
            }
            other => panic!("{src:?}: {other:?}"),
        }
    }
    assert!(matches!(
        Grammar::parse("foo ::= \"a\""),
        Err(GrammarError::NoRoot(r)) if r == "root"
    ));
}

/// Text split into tokens anywhere, inside UTF-8 sequences too, matches as a whole; `allows`
/// agrees with accepting.
#[test]
fn utf8_split_across_tokens() {
    let g = Arc::new(Grammar::parse(r#"root ::= "é" [α-ω]+ "!""#).unwrap());
    let text = "éαβγ!".as_bytes();
    for cut in 0..=text.len() {
        let mut m = Matcher::new(Arc::clone(&g));
        assert!(m.allows(1, &text[..cut]) || cut == 0, "cut {cut}");
        assert!(m.accept_bytes(&text[..cut]), "cut {cut}");
        assert!(m.accept_bytes(&text[cut..]), "cut {cut}");
        assert!(m.can_end());
    }
    let m = Matcher::new(Arc::clone(&g));
    assert!(!m.allows(1, b"e"));
    assert!(
        !m.allows(1, &"€".as_bytes()[..1]),
        "a lead byte that cannot complete to é"
    );
    assert!(m.allows(1, &"é".as_bytes()[..1]));
    assert!(!m.allows(1, b""));
    let _ = Elem::End;
}

fn accepts(g: &Arc<Grammar>, text: &str) -> bool {
    let mut m = Matcher::new(Arc::clone(g));
    m.accept_bytes(text.as_bytes()) && m.can_end()
}

/// The grammars shipped under grammars/ parse, and take what they describe.
#[test]
fn shipped_grammars() {
    let load = |name: &str| {
        let path = common::root().join("grammars").join(name);
        Arc::new(Grammar::parse(&std::fs::read_to_string(&path).unwrap()).unwrap())
    };
    let json = load("json.gbnf");
    for ok in [
        r#"{"a": [1, -2.5e3, true, null], "b": {"c": "d\n\u00e9"}}"#,
        "[]",
        "\"x\"",
        "{\n  \"k\": 0\n}",
    ] {
        assert!(accepts(&json, ok), "json should take {ok:?}");
    }
    for bad in ["{", "[1,]", "01", "{\"a\" 1}", "\"a\nb\"", "tru"] {
        assert!(!accepts(&json, bad), "json should refuse {bad:?}");
    }
    let list = load("list.gbnf");
    assert!(accepts(&list, "- eggs\n- milk\n"));
    assert!(!accepts(&list, "eggs\n"));
    let arith = load("arithmetic.gbnf");
    assert!(accepts(&arith, "(1 + 2.5) * -3 / 4"));
    assert!(!accepts(&arith, "1 +"));
    let choice = load("choice.gbnf");
    assert!(accepts(&choice, "maybe") && !accepts(&choice, "perhaps"));
}

fn schema_grammar(schema: &str) -> Result<Arc<Grammar>, String> {
    let v: Value = serde_json::from_str(schema).unwrap();
    let gbnf = ferrolm::grammar::schema_to_gbnf(&v).map_err(|e| e.to_string())?;
    Ok(Arc::new(
        Grammar::parse(&gbnf).map_err(|e| format!("{e}\n{gbnf}"))?,
    ))
}

/// Schemas beyond llama.cpp's cases: references (recursive too), tuples, item counts, nested
/// objects, anyOf; and the errors that name what is not supported.
#[test]
fn schema_features_and_errors() {
    let tree = schema_grammar(
        r##"{"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
            "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["v"]}}}"##,
    )
    .unwrap();
    assert!(accepts(
        &tree,
        r#"{"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]}"#
    ));
    assert!(!accepts(&tree, r#"{"kids": []}"#));
    let tuple =
        schema_grammar(r#"{"prefixItems": [{"type": "string"}, {"enum": [1, 2]}]}"#).unwrap();
    assert!(accepts(&tuple, r#"["a", 2]"#) && !accepts(&tuple, r#"["a", 3]"#));
    let counted = schema_grammar(
        r#"{"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2}"#,
    )
    .unwrap();
    assert!(accepts(&counted, "[true]") && accepts(&counted, "[true, false]"));
    assert!(!accepts(&counted, "[]") && !accepts(&counted, "[true, true, true]"));
    let any =
        schema_grammar(r#"{"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 2}]}"#)
            .unwrap();
    assert!(accepts(&any, "null") && accepts(&any, r#""ab""#) && !accepts(&any, r#""abc""#));
    for (schema, named) in [
        (
            r#"{"type": "string", "contentEncoding": "base64"}"#,
            "contentEncoding",
        ),
        (r#"{"allOf": [{"type": "string"}]}"#, "allOf"),
        (
            r#"{"$ref": "https://example.com/s.json"}"#,
            "only local references",
        ),
        (r##"{"$ref": "#/$defs/missing"}"##, "points at nothing"),
        (r#"{"type": "string", "format": "email"}"#, "format 'email'"),
        (r#"{"type": "string", "pattern": "(?=a)b"}"#, "lookaround"),
        (
            r#"{"type": "integer", "minimum": 5, "maximum": 1}"#,
            "no integer lies between",
        ),
        (
            r#"{"properties": {"a": {"type": "frobnicate"}}}"#,
            "/properties/a",
        ),
    ] {
        let e = schema_grammar(schema).unwrap_err();
        assert!(e.contains(named), "{schema}: {e}");
    }
}
