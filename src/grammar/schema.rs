//! JSON Schema to GBNF: a grammar that accepts exactly the JSON texts a schema describes, as
//! llama.cpp's `json_schema_to_grammar` makes them (the same whitespace between tokens, the same
//! property order rules, the same limits), so that `--json-schema` and a server's
//! `response_format` produce output a parser and a validator take.
//!
//! Supported: `type` (one or a list), `properties`, `required`, `additionalProperties`, `items`
//! (a schema, or a list: a tuple), `prefixItems`, `minItems`, `maxItems`, `enum`, `const`,
//! `anyOf`, `oneOf`, `$ref` to `#/definitions/..` or `#/$defs/..`, strings with `minLength`,
//! `maxLength`, `pattern` (a regular expression without lookaround or backreferences) and
//! `format` (`date`, `time`, `date-time`, `uuid`), integers with `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, numbers (their bounds are not enforced, as llama.cpp
//! does not enforce them). Annotations (`title`, `description`,
//! `$schema`, `$id`, `examples`, `default`, `$comment`) are ignored; any other keyword is an error
//! that names it.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

/// Why a schema cannot be made a grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON Schema at {at}: {msg}")]
pub struct SchemaError {
    /// Where in the schema (a JSON pointer, "/" for the root).
    pub at: String,
    pub msg: String,
}

/// Whitespace allowed between JSON tokens: none, one space, or one or two newlines and an indent
/// of at most 20 (bounded, so that a model cannot pad forever).
const SPACE: &str = r#"| " " | "\n"{1,2} [ \t]{0,20}"#;

/// Rules the converter uses, with the rules each needs.
const PRIMITIVES: &[(&str, &str, &[&str])] = &[
    ("space", SPACE, &[]),
    ("boolean", r#"("true" | "false") space"#, &["space"]),
    ("decimal-part", "[0-9]{1,16}", &[]),
    ("integral-part", "[0] | [1-9] [0-9]{0,15}", &[]),
    (
        "number",
        r#"("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)? space"#,
        &["integral-part", "decimal-part", "space"],
    ),
    (
        "integer",
        r#"("-"? integral-part) space"#,
        &["integral-part", "space"],
    ),
    (
        "value",
        "object | array | string | number | boolean | null",
        &["object", "array", "string", "number", "boolean", "null"],
    ),
    (
        "object",
        r#""{" space ( string ":" space value ("," space string ":" space value)* )? "}" space"#,
        &["string", "value", "space"],
    ),
    (
        "array",
        r#""[" space ( value ("," space value)* )? "]" space"#,
        &["value", "space"],
    ),
    (
        "uuid",
        r#""\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12} "\"" space"#,
        &["space"],
    ),
    (
        "char",
        r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})"#,
        &[],
    ),
    ("string", r#""\"" char* "\"" space"#, &["char", "space"]),
    ("null", r#""null" space"#, &["space"]),
    (
        "date",
        r#"[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )"#,
        &[],
    ),
    (
        "time",
        r#"([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )"#,
        &[],
    ),
    ("date-time", r#"date "T" time"#, &["date", "time"]),
    ("date-string", r#""\"" date "\"" space"#, &["date", "space"]),
    ("time-string", r#""\"" time "\"" space"#, &["time", "space"]),
    (
        "date-time-string",
        r#""\"" date-time "\"" space"#,
        &["date-time", "space"],
    ),
];

/// Keywords that describe and do not constrain.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "examples",
    "default",
    "$comment",
    "definitions",
    "$defs",
    "readOnly",
    "writeOnly",
    "deprecated",
];

/// Integers without bounds have at most this many digits (as llama.cpp's).
const MAX_DIGITS: usize = 16;

/// The GBNF grammar (root rule `root`) of the JSON texts `schema` describes.
pub fn schema_to_gbnf(schema: &Value) -> Result<String, SchemaError> {
    let mut c = Conv {
        root: schema,
        rules: BTreeMap::new(),
        order: Vec::new(),
        refs: HashMap::new(),
    };
    let r = c.visit(schema, "root", "/")?;
    if r != "root" {
        c.add("root", &r);
    }
    let mut out = String::new();
    // root first, then the others in the order they were made.
    for name in
        std::iter::once("root".to_string()).chain(c.order.iter().filter(|n| *n != "root").cloned())
    {
        out.push_str(&name);
        out.push_str(" ::= ");
        out.push_str(&c.rules[&name]);
        out.push('\n');
    }
    Ok(out)
}

struct Conv<'a> {
    root: &'a Value,
    rules: BTreeMap<String, String>,
    order: Vec<String>,
    /// `$ref` target -> its rule name (made before the target is visited, so recursion works).
    refs: HashMap<String, String>,
}

fn err<T>(at: &str, msg: impl Into<String>) -> Result<T, SchemaError> {
    Err(SchemaError {
        at: if at.is_empty() { "/".into() } else { at.into() },
        msg: msg.into(),
    })
}

/// A GBNF literal for `s`.
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A rule name from arbitrary text: letters, digits and '-'.
fn rule_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if n.is_empty() {
        "r".into()
    } else {
        n
    }
}

impl Conv<'_> {
    /// Adds rule `name ::= body` (a new name if `name` holds another body); returns its name.
    fn add(&mut self, name: &str, body: &str) -> String {
        let base = rule_name(name);
        let mut n = base.clone();
        let mut i = 0;
        loop {
            match self.rules.get(&n) {
                Some(b) if b == body => return n,
                Some(_) => {
                    i += 1;
                    n = format!("{base}{i}");
                }
                None => break,
            }
        }
        self.rules.insert(n.clone(), body.to_string());
        self.order.push(n.clone());
        n
    }

    /// A primitive rule (and those it needs); returns its name.
    fn prim(&mut self, name: &str) -> String {
        let &(_, body, deps) = PRIMITIVES
            .iter()
            .find(|p| p.0 == name)
            .expect("a known primitive");
        if !self.rules.contains_key(name) {
            self.rules.insert(name.to_string(), body.to_string());
            self.order.push(name.to_string());
            for d in deps {
                self.prim(d);
            }
        }
        name.to_string()
    }

    fn visit(&mut self, s: &Value, name: &str, at: &str) -> Result<String, SchemaError> {
        let o = match s {
            Value::Bool(true) => return Ok(self.prim("value")),
            Value::Object(o) => o,
            Value::Bool(false) => return err(at, "the schema 'false' allows nothing"),
            _ => return err(at, "a schema must be an object or a boolean"),
        };
        const KNOWN: &[&str] = &[
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "prefixItems",
            "minItems",
            "maxItems",
            "enum",
            "const",
            "anyOf",
            "oneOf",
            "$ref",
            "minLength",
            "maxLength",
            "pattern",
            "format",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "uniqueItems",
        ];
        for k in o.keys() {
            if !KNOWN.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()) {
                return err(at, format!("keyword '{k}' is not supported"));
            }
        }
        if let Some(r) = o.get("$ref") {
            return self.reference(r, at);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = o.get(key) {
                let Some(alts) = alts.as_array().filter(|a| !a.is_empty()) else {
                    return err(at, format!("'{key}' must be a non-empty list of schemas"));
                };
                let mut parts = Vec::new();
                for (i, a) in alts.iter().enumerate() {
                    parts.push(self.visit(
                        a,
                        &format!("{name}-{i}"),
                        &format!("{at}/{key}/{i}"),
                    )?);
                }
                return Ok(self.add(name, &parts.join(" | ")));
            }
        }
        if let Some(v) = o.get("const") {
            let body = format!("{} {}", literal(&v.to_string()), self.prim("space"));
            return Ok(self.add(name, &body));
        }
        if let Some(vs) = o.get("enum") {
            let Some(vs) = vs.as_array().filter(|a| !a.is_empty()) else {
                return err(at, "'enum' must be a non-empty list");
            };
            let alts: Vec<String> = vs.iter().map(|v| literal(&v.to_string())).collect();
            let body = format!("({}) {}", alts.join(" | "), self.prim("space"));
            return Ok(self.add(name, &body));
        }
        match o.get("type") {
            Some(Value::Array(ts)) => {
                let mut parts = Vec::new();
                for (i, t) in ts.iter().enumerate() {
                    let mut one = o.clone();
                    one.insert("type".into(), t.clone());
                    parts.push(self.visit(&Value::Object(one), &format!("{name}-{i}"), at)?);
                }
                if parts.is_empty() {
                    return err(at, "'type' is an empty list");
                }
                Ok(self.add(name, &parts.join(" | ")))
            }
            Some(Value::String(t)) => self.typed(o, t, name, at),
            Some(_) => err(at, "'type' must be a string or a list of strings"),
            None => {
                let t = if o.contains_key("properties") || o.contains_key("additionalProperties") {
                    "object"
                } else if o.contains_key("items") || o.contains_key("prefixItems") {
                    "array"
                } else if ["pattern", "format", "minLength", "maxLength"]
                    .iter()
                    .any(|k| o.contains_key(*k))
                {
                    "string"
                } else if ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]
                    .iter()
                    .any(|k| o.contains_key(*k))
                {
                    "integer"
                } else {
                    return Ok({
                        let p = self.prim("value");
                        self.add(name, &p)
                    });
                };
                self.typed(o, t, name, at)
            }
        }
    }

    fn reference(&mut self, r: &Value, at: &str) -> Result<String, SchemaError> {
        let Some(r) = r.as_str() else {
            return err(at, "'$ref' must be a string");
        };
        if let Some(n) = self.refs.get(r) {
            return Ok(n.clone());
        }
        let Some(path) = r.strip_prefix("#/") else {
            return err(at, format!("'$ref' {r}: only local references (#/definitions/.., #/$defs/..) are supported"));
        };
        let mut target = self.root;
        for part in path.split('/') {
            let part = part.replace("~1", "/").replace("~0", "~");
            match target.get(&part) {
                Some(t) => target = t,
                None => return err(at, format!("'$ref' {r} points at nothing")),
            }
        }
        let name = rule_name(path.rsplit('/').next().unwrap_or("ref"));
        // Reserve the name, then fill it in (a recursive reference finds it reserved).
        let name = self.add(&name, "\"\"");
        self.refs.insert(r.to_string(), name.clone());
        let body = self.visit(target, &format!("{name}-body"), r)?;
        self.rules.insert(name.clone(), body);
        Ok(name)
    }

    fn typed(
        &mut self,
        o: &Map<String, Value>,
        t: &str,
        name: &str,
        at: &str,
    ) -> Result<String, SchemaError> {
        match t {
            "object" => self.object(o, name, at),
            "array" => self.array(o, name, at),
            "string" => self.string(o, name, at),
            "integer" => self.integer(o, name, at),
            "number" => {
                // Bounds on non-integer numbers are not enforced (nor are they by llama.cpp).
                Ok({
                    let p = self.prim("number");
                    self.add(name, &p)
                })
            }
            "boolean" => Ok({
                let p = self.prim("boolean");
                self.add(name, &p)
            }),
            "null" => Ok({
                let p = self.prim("null");
                self.add(name, &p)
            }),
            _ => err(at, format!("unknown type '{t}'")),
        }
    }

    fn object(
        &mut self,
        o: &Map<String, Value>,
        name: &str,
        at: &str,
    ) -> Result<String, SchemaError> {
        let empty = Map::new();
        let props = match o.get("properties") {
            Some(Value::Object(p)) => p,
            Some(_) => return err(at, "'properties' must be an object"),
            None => &empty,
        };
        let required: Vec<&str> = match o.get("required") {
            Some(Value::Array(r)) => r.iter().filter_map(|v| v.as_str()).collect(),
            Some(_) => return err(at, "'required' must be a list of names"),
            None => Vec::new(),
        };
        let additional = match o.get("additionalProperties") {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(Value::Bool(true)),
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return err(at, "'additionalProperties' must be a boolean or a schema"),
        };
        if props.is_empty() && additional.is_none() && !o.contains_key("properties") {
            // `{"type": "object"}`: any object.
            return Ok({
                let p = self.prim("object");
                self.add(name, &p)
            });
        }
        let space = self.prim("space");
        // key-value rules, in the properties' order; required ones first, each group in order.
        let mut kv: Vec<(String, String)> = Vec::new();
        for (k, v) in props {
            let vr = self.visit(v, &format!("{name}-{k}"), &format!("{at}/properties/{k}"))?;
            let body = format!(
                "{} {space} \":\" {space} {vr}",
                literal(&Value::String(k.clone()).to_string())
            );
            kv.push((k.clone(), self.add(&format!("{name}-{k}-kv"), &body)));
        }
        let mut req: Vec<&(String, String)> = kv
            .iter()
            .filter(|(k, _)| required.contains(&k.as_str()))
            .collect();
        let mut opt: Vec<(String, String)> = kv
            .iter()
            .filter(|(k, _)| !required.contains(&k.as_str()))
            .cloned()
            .collect();
        req.sort_by_key(|(k, _)| props.keys().position(|p| p == k));
        if let Some(add) = &additional {
            let vr = self.visit(
                add,
                &format!("{name}-additional-value"),
                &format!("{at}/additionalProperties"),
            )?;
            let known: Vec<&str> = props.keys().map(|k| k.as_str()).collect();
            let key = if known.is_empty() {
                self.prim("string")
            } else {
                let body = self.not_strings(&known);
                self.add(&format!("{name}-additional-k"), &body)
            };
            let body = format!("{key} \":\" {space} {vr}");
            opt.push((
                "*".into(),
                self.add(&format!("{name}-additional-kv"), &body),
            ));
        }
        let mut rule = format!("\"{{\" {space} ");
        rule.push_str(
            &req.iter()
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>()
                .join(&format!(" \",\" {space} ")),
        );
        if !opt.is_empty() {
            rule.push_str(" (");
            if !req.is_empty() {
                rule.push_str(&format!(" \",\" {space} ( "));
            }
            let mut alts = Vec::new();
            for i in 0..opt.len() {
                alts.push(self.optional_chain(&opt[i..], false, name));
            }
            rule.push_str(&alts.join(" | "));
            if !req.is_empty() {
                rule.push_str(" )");
            }
            rule.push_str(" )?");
        }
        rule.push_str(" \"}\" ");
        rule.push_str(&space);
        Ok(self.add(name, &rule))
    }

    /// The optional properties `ks` in order, any of them present: the first (unless
    /// `first_optional`) then a rule for the rest; "*" (additional properties) repeats.
    fn optional_chain(
        &mut self,
        ks: &[(String, String)],
        first_optional: bool,
        name: &str,
    ) -> String {
        let space = "space";
        let (k, kv) = &ks[0];
        let comma = format!("( \",\" {space} {kv} )");
        let mut res = if first_optional {
            format!("{comma}{}", if k == "*" { "*" } else { "?" })
        } else if k == "*" {
            format!("{kv} {comma}*")
        } else {
            kv.clone()
        };
        if ks.len() > 1 {
            let rest = self.optional_chain(&ks[1..], true, name);
            let r = self.add(&format!("{name}-{}-rest", rule_name(k)), &rest);
            res.push(' ');
            res.push_str(&r);
        }
        res
    }

    /// A JSON string that is none of `strings` (the keys additional properties may not use).
    fn not_strings(&mut self, strings: &[&str]) -> String {
        #[derive(Default)]
        struct Node {
            children: BTreeMap<char, Node>,
            end: bool,
        }
        let mut trie = Node::default();
        for s in strings {
            let mut n = &mut trie;
            for c in s.chars() {
                n = n.children.entry(c).or_default();
            }
            n.end = true;
        }
        let ch = self.prim("char");
        let space = self.prim("space");
        fn class_char(c: char) -> String {
            match c {
                '\\' | ']' | '[' | '-' | '^' | '"' => format!("\\{c}"),
                '\n' => "\\n".into(),
                '\r' => "\\r".into(),
                '\t' => "\\t".into(),
                c if (c as u32) < 0x20 => format!("\\x{:02X}", c as u32),
                c => c.to_string(),
            }
        }
        fn visit(n: &Node, ch: &str, out: &mut String) {
            let mut first = true;
            let mut rejects = String::new();
            for (&c, child) in &n.children {
                rejects.push_str(&class_char(c));
                if !first {
                    out.push_str(" | ");
                }
                first = false;
                out.push_str(&format!("[{}]", class_char(c)));
                if !child.children.is_empty() {
                    out.push_str(" (");
                    visit(child, ch, out);
                    out.push(')');
                } else if child.end {
                    out.push_str(&format!(" {ch}+"));
                }
            }
            if !n.children.is_empty() {
                if !first {
                    out.push_str(" | ");
                }
                out.push_str(&format!("[^\"{rejects}] {ch}*"));
            }
        }
        let mut out = String::from("[\"] ( ");
        visit(&trie, &ch, &mut out);
        out.push_str(&format!(
            " ){} [\"] {space}",
            if trie.end { "" } else { "?" }
        ));
        out
    }

    fn array(
        &mut self,
        o: &Map<String, Value>,
        name: &str,
        at: &str,
    ) -> Result<String, SchemaError> {
        let space = self.prim("space");
        let tuple = match (o.get("prefixItems"), o.get("items")) {
            (Some(Value::Array(p)), _) | (None, Some(Value::Array(p))) => Some(p),
            _ => None,
        };
        if let Some(items) = tuple {
            let mut parts = Vec::new();
            for (i, it) in items.iter().enumerate() {
                parts.push(self.visit(
                    it,
                    &format!("{name}-tuple-{i}"),
                    &format!("{at}/items/{i}"),
                )?);
            }
            let body = format!(
                "\"[\" {space} {} \"]\" {space}",
                parts.join(&format!(" \",\" {space} "))
            );
            return Ok(self.add(name, &body));
        }
        let item = match o.get("items") {
            Some(it) => self.visit(it, &format!("{name}-item"), &format!("{at}/items"))?,
            None => self.prim("value"),
        };
        let min = o.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = o.get("maxItems").and_then(Value::as_u64);
        if let Some(m) = max {
            if m < min {
                return err(at, format!("maxItems {m} is below minItems {min}"));
            }
        }
        let sep = format!("\",\" {space}");
        let body = format!(
            "\"[\" {space} {} \"]\" {space}",
            repeat_sep(&item, min, max, &sep)
        );
        Ok(self.add(name, &body))
    }

    fn string(
        &mut self,
        o: &Map<String, Value>,
        name: &str,
        at: &str,
    ) -> Result<String, SchemaError> {
        let space = self.prim("space");
        if let Some(p) = o.get("pattern") {
            let Some(p) = p.as_str() else {
                return err(at, "'pattern' must be a string");
            };
            let re = regex_to_gbnf(p).map_err(|m| SchemaError {
                at: at.to_string(),
                msg: format!("pattern {p:?}: {m}"),
            })?;
            return Ok(self.add(name, &format!("\"\\\"\" ({re}) \"\\\"\" {space}")));
        }
        if let Some(f) = o.get("format") {
            let r = match f.as_str() {
                Some("date") => "date-string",
                Some("time") => "time-string",
                Some("date-time") => "date-time-string",
                Some("uuid") => "uuid",
                Some(other) => {
                    return err(
                        at,
                        format!("format '{other}' is not supported (date, time, date-time, uuid)"),
                    )
                }
                None => return err(at, "'format' must be a string"),
            };
            return Ok({
                let p = self.prim(r);
                self.add(name, &p)
            });
        }
        let min = o.get("minLength").and_then(Value::as_u64).unwrap_or(0);
        let max = o.get("maxLength").and_then(Value::as_u64);
        if min == 0 && max.is_none() {
            return Ok({
                let p = self.prim("string");
                self.add(name, &p)
            });
        }
        let ch = self.prim("char");
        let body = format!("\"\\\"\" {} \"\\\"\" {space}", repeat(&ch, min, max));
        Ok(self.add(name, &body))
    }

    fn integer(
        &mut self,
        o: &Map<String, Value>,
        name: &str,
        at: &str,
    ) -> Result<String, SchemaError> {
        let num = |k: &str| -> Result<Option<i64>, SchemaError> {
            match o.get(k) {
                None => Ok(None),
                Some(v) => match (v.as_i64(), v.as_f64()) {
                    (Some(i), _) => Ok(Some(i)),
                    (None, Some(f)) if f.is_finite() => {
                        Ok(Some(if k.starts_with("min") || k == "exclusiveMinimum" {
                            f.ceil() as i64
                        } else {
                            f.floor() as i64
                        }))
                    }
                    _ => Err(SchemaError {
                        at: at.into(),
                        msg: format!("'{k}' must be a number"),
                    }),
                },
            }
        };
        let mut lo = num("minimum")?;
        if let Some(e) = num("exclusiveMinimum")? {
            lo = Some(lo.map_or(e + 1, |l| l.max(e + 1)));
        }
        let mut hi = num("maximum")?;
        if let Some(e) = num("exclusiveMaximum")? {
            hi = Some(hi.map_or(e - 1, |h| h.min(e - 1)));
        }
        if lo.is_none() && hi.is_none() {
            return Ok({
                let p = self.prim("integer");
                self.add(name, &p)
            });
        }
        if let (Some(l), Some(h)) = (lo, hi) {
            if l > h {
                return err(at, format!("no integer lies between {l} and {h}"));
            }
        }
        let space = self.prim("space");
        let body = format!("({}) {space}", int_range(lo, hi));
        Ok(self.add(name, &body))
    }
}

/// `item` repeated min..=max times (max None: no bound) as GBNF.
fn repeat(item: &str, min: u64, max: Option<u64>) -> String {
    match (min, max) {
        (0, None) => format!("{item}*"),
        (1, None) => format!("{item}+"),
        (m, None) => format!("{item}{{{m},}}"),
        (0, Some(1)) => format!("{item}?"),
        (m, Some(x)) if m == x => format!("{item}{{{m}}}"),
        (m, Some(x)) => format!("{item}{{{m},{x}}}"),
    }
}

/// `item` repeated min..=max times separated by `sep`.
fn repeat_sep(item: &str, min: u64, max: Option<u64>, sep: &str) -> String {
    if max == Some(0) {
        return String::new();
    }
    let rest = repeat(
        &format!("({sep} {item})"),
        min.saturating_sub(1),
        max.map(|m| m - 1),
    );
    let one = format!("{item} {rest}");
    if min == 0 {
        format!("({one})?")
    } else {
        one
    }
}

/// GBNF for the decimal integers in lo..=hi (None: unbounded; at most `MAX_DIGITS` digits then).
fn int_range(lo: Option<i64>, hi: Option<i64>) -> String {
    let mut alts = Vec::new();
    let lo_i = lo.map(|v| v as i128);
    let hi_i = hi.map(|v| v as i128);
    // Negative part: -(hi' .. lo') with hi' = max(1, -hi), lo' = -lo.
    if lo_i.is_none_or(|l| l < 0) {
        let nlo = hi_i.map_or(1, |h| (-h).max(1));
        let nhi = lo_i.map(|l| -l);
        if nhi.is_none_or(|h| h >= nlo) {
            alts.push(format!("\"-\" ({})", nonneg_range(nlo, nhi)));
        }
    }
    // Non-negative part: max(0, lo) .. hi.
    if hi_i.is_none_or(|h| h >= 0) {
        let plo = lo_i.map_or(0, |l| l.max(0));
        alts.push(nonneg_range(plo, hi_i));
    }
    alts.join(" | ")
}

/// The decimal forms (no leading zeros) of lo..=hi, lo >= 0 (hi None: up to `MAX_DIGITS` digits).
fn nonneg_range(lo: i128, hi: Option<i128>) -> String {
    let digits = |v: i128| v.to_string().len();
    let max_len = hi.map_or(MAX_DIGITS, digits);
    let mut alts = Vec::new();
    for len in digits(lo)..=max_len {
        let first = if len == 1 {
            0
        } else {
            10i128.pow(len as u32 - 1)
        };
        let last = 10i128.pow(len as u32) - 1;
        let a = lo.max(first);
        let b = hi.map_or(last, |h| h.min(last));
        if a > b {
            continue;
        }
        alts.push(same_len_range(&a.to_string(), &b.to_string()));
    }
    alts.join(" | ")
}

/// The numbers a..=b written with the same number of digits as a and b (a <= b).
fn same_len_range(a: &str, b: &str) -> String {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    debug_assert_eq!(a.len(), b.len());
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let mut out = String::new();
    if common > 0 {
        out.push_str(&format!(
            "\"{}\"",
            std::str::from_utf8(&a[..common]).expect("digits")
        ));
    }
    if common == a.len() {
        return out;
    }
    let (x, y) = (a[common], b[common]);
    let rest = a.len() - common - 1;
    let tail_a = std::str::from_utf8(&a[common + 1..]).expect("digits");
    let tail_b = std::str::from_utf8(&b[common + 1..]).expect("digits");
    let all = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!(" [0-9]{{{n}}}")
        }
    };
    let class = |lo: u8, hi: u8| {
        if lo == hi {
            format!("[{}]", lo as char)
        } else {
            format!("[{}-{}]", lo as char, hi as char)
        }
    };
    let mut alts = Vec::new();
    if rest == 0 {
        alts.push(class(x, y));
    } else {
        let a_low = tail_a.bytes().all(|c| c == b'0');
        let b_high = tail_b.bytes().all(|c| c == b'9');
        // x followed by tail_a..=99..9 (all of them when tail_a is 00..0)
        let mid_lo = if a_low { x } else { x + 1 };
        let mid_hi = if b_high { y } else { y - 1 };
        if !a_low {
            alts.push(format!(
                "[{}] ({})",
                x as char,
                same_len_range(tail_a, &"9".repeat(rest))
            ));
        }
        if mid_lo <= mid_hi {
            alts.push(format!("{}{}", class(mid_lo, mid_hi), all(rest)));
        }
        if !b_high {
            alts.push(format!(
                "[{}] ({})",
                y as char,
                same_len_range(&"0".repeat(rest), tail_b)
            ));
        }
    }
    let body = alts.join(" | ");
    if out.is_empty() {
        body
    } else {
        format!("{out} ({body})")
    }
}

/// A regular expression (JSON Schema `pattern`, anchored or not: the whole string must match, as
/// llama.cpp reads it) as a GBNF expression over the string's characters.
fn regex_to_gbnf(re: &str) -> Result<String, String> {
    let inner = re.strip_prefix('^').unwrap_or(re);
    let inner = inner
        .strip_suffix('$')
        .filter(|s| !s.ends_with('\\') || s.ends_with("\\\\"))
        .unwrap_or(inner);
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let out = re_alts(&chars, &mut i)?;
    if i < chars.len() {
        return Err(format!("unexpected '{}'", chars[i]));
    }
    Ok(out)
}

fn re_alts(c: &[char], i: &mut usize) -> Result<String, String> {
    let mut alts = vec![re_seq(c, i)?];
    while *i < c.len() && c[*i] == '|' {
        *i += 1;
        alts.push(re_seq(c, i)?);
    }
    Ok(alts.join(" | "))
}

fn re_seq(c: &[char], i: &mut usize) -> Result<String, String> {
    let mut items: Vec<String> = Vec::new();
    while *i < c.len() && c[*i] != '|' && c[*i] != ')' {
        let atom = match c[*i] {
            '(' => {
                *i += 1;
                if c.get(*i) == Some(&'?') {
                    if c.get(*i + 1) == Some(&':') {
                        *i += 2;
                    } else {
                        return Err("lookaround and named groups are not supported".into());
                    }
                }
                let inner = re_alts(c, i)?;
                if c.get(*i) != Some(&')') {
                    return Err("unclosed group".into());
                }
                *i += 1;
                format!("({inner})")
            }
            '[' => {
                let start = *i;
                *i += 1;
                let mut s = String::from("[");
                if c.get(*i) == Some(&'^') {
                    s.push('^');
                    *i += 1;
                }
                while *i < c.len() && c[*i] != ']' {
                    if c[*i] == '\\' && *i + 1 < c.len() {
                        s.push_str(&class_escape(c[*i + 1])?);
                        *i += 2;
                    } else {
                        match c[*i] {
                            '"' => s.push_str("\\\""),
                            ch => s.push(ch),
                        }
                        *i += 1;
                    }
                }
                if *i >= c.len() {
                    return Err(format!("unterminated class at {start}"));
                }
                *i += 1;
                s.push(']');
                s
            }
            '.' => {
                *i += 1;
                r#"[^"\\\x00-\x1F\x7F]"#.into()
            }
            '\\' => {
                let e = *c.get(*i + 1).ok_or("a trailing backslash")?;
                *i += 2;
                match e {
                    'd' => "[0-9]".into(),
                    'D' => "[^0-9]".into(),
                    'w' => "[a-zA-Z0-9_]".into(),
                    'W' => "[^a-zA-Z0-9_]".into(),
                    's' => "[ \\t\\n\\r]".into(),
                    'S' => "[^ \\t\\n\\r]".into(),
                    'n' => "\"\\n\"".into(),
                    't' => "\"\\t\"".into(),
                    'r' => "\"\\r\"".into(),
                    c if c.is_ascii_digit() => {
                        return Err("backreferences are not supported".into())
                    }
                    c => literal(&c.to_string()),
                }
            }
            '*' | '+' | '?' | '{' => return Err(format!("'{}' with nothing before it", c[*i])),
            '^' | '$' => return Err("anchors inside the pattern are not supported".into()),
            ch => {
                *i += 1;
                literal(&ch.to_string())
            }
        };
        // Quantifier?
        let q = match c.get(*i) {
            Some('*') => {
                *i += 1;
                "*".to_string()
            }
            Some('+') => {
                *i += 1;
                "+".to_string()
            }
            Some('?') => {
                *i += 1;
                "?".to_string()
            }
            Some('{') => {
                let close = c[*i..]
                    .iter()
                    .position(|&x| x == '}')
                    .ok_or("unclosed '{'")?
                    + *i;
                let body: String = c[*i + 1..close].iter().collect();
                let ok = body.split(',').count() <= 2
                    && body
                        .split(',')
                        .next()
                        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    && body
                        .split(',')
                        .nth(1)
                        .is_none_or(|s| s.bytes().all(|b| b.is_ascii_digit()));
                if !ok {
                    return Err(format!("bad repetition {{{body}}}"));
                }
                *i = close + 1;
                format!("{{{body}}}")
            }
            _ => String::new(),
        };
        if c.get(*i) == Some(&'?') && !q.is_empty() {
            // Lazy quantifiers match the same strings.
            *i += 1;
        }
        items.push(format!("{atom}{q}"));
    }
    Ok(if items.is_empty() {
        "\"\"".to_string()
    } else {
        items.join(" ")
    })
}

/// An escape inside a regex class as a GBNF class item.
fn class_escape(e: char) -> Result<String, String> {
    Ok(match e {
        'd' => "0-9".into(),
        'w' => "a-zA-Z0-9_".into(),
        's' => " \\t\\n\\r".into(),
        'n' => "\\n".into(),
        't' => "\\t".into(),
        'r' => "\\r".into(),
        '\\' | ']' | '[' | '-' | '^' => format!("\\{e}"),
        '"' => "\\\"".into(),
        'D' | 'W' | 'S' => return Err(format!("'\\{e}' inside a class is not supported")),
        c => c.to_string(),
    })
}
