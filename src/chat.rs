//! Chat templates: render a conversation with the model's own `tokenizer.chat_template` (Jinja).
//!
//! Templates are rendered with minijinja configured as Hugging Face's `apply_chat_template`
//! configures Jinja2: `trim_blocks` and `lstrip_blocks` on, Python string / dict / list methods
//! (`.strip()`, `.startswith()`, `.items()`, ... from `minijinja-contrib`'s pycompat),
//! `raise_exception(msg)`, `strftime_now(fmt)` (UTC), a `tojson` filter that writes JSON as
//! Python's `json.dumps` does, `{% break %}` / `{% continue %}`, and the variables `messages`,
//! `add_generation_prompt`, `bos_token` and `eos_token`. A file with no template gets ChatML
//! (llama.cpp's fallback).
//!
//! ```no_run
//! use ferrolm::chat::{ChatTemplate, Message};
//! use ferrolm::gguf::Gguf;
//!
//! let g = Gguf::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let tmpl = ChatTemplate::from_gguf(&g)?;
//! let text = tmpl.render(&[Message::user("What is the capital of France?")], true)?;
//! assert!(text.ends_with("<|im_start|>assistant\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;

use crate::gguf::{Gguf, GgufError};

/// Metadata key of the default chat template.
pub const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// ChatML, rendered exactly as llama.cpp's built-in `chatml` template.
pub const CHATML_TEMPLATE: &str = r"{%- for message in messages -%}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}";

/// The templates `--chat-template NAME` knows, written as llama.cpp's built-in templates of the
/// same names render (`llm_chat_apply_template`): chatml, llama3, gemma, phi3, mistral.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("chatml", CHATML_TEMPLATE),
    (
        "llama3",
        r"{{- bos_token -}}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}",
    ),
    (
        "gemma",
        r"{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- set ns.system = message.content | trim + '\n\n' -%}
{%- else -%}
{%- set role = 'model' if message.role == 'assistant' else message.role -%}
{{- '<start_of_turn>' + role + '\n' + ns.system + message.content | trim + '<end_of_turn>\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\n' -}}
{%- endif -%}",
    ),
    (
        "phi3",
        r"{%- for message in messages -%}
{{- '<|' + message.role + '|>\n' + message.content + '<|end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|assistant|>\n' -}}
{%- endif -%}",
    ),
    (
        "mistral",
        r"{{- bos_token -}}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- set ns.system = message.content + '\n\n' -%}
{%- elif message.role == 'user' -%}
{{- '[INST] ' + ns.system + message.content + ' [/INST]' -}}
{%- set ns.system = '' -%}
{%- else -%}
{{- ' ' + message.content + eos_token -}}
{%- endif -%}
{%- endfor -%}",
    ),
];

/// The Jinja source of the built-in template `name` (case-insensitive), if there is one.
pub fn builtin_template(name: &str) -> Option<&'static str> {
    BUILTIN_TEMPLATES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, src)| *src)
}

/// The work one render may do, in minijinja's fuel: one per instruction, one per 64 bytes of
/// strings and output created. It bounds both the time and the memory a crafted template can
/// take (a string doubled in a loop stops at about 128 MiB); real templates need a few hundred
/// instructions and a few copies of the conversation per render, far below it.
const FUEL: u64 = 2_000_000;

/// Prefix of the error detail `raise_exception` produces, to tell it from other failures.
const RAISED: &str = "\u{0}raise_exception\u{0}";

const NAME: &str = "chat_template";

/// Why a template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The metadata holds something other than a string template.
    #[error(transparent)]
    Metadata(#[from] GgufError),
    /// The template is not valid Jinja (as minijinja reads it).
    #[error("the chat template does not compile: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)`.
    #[error("the chat template refused the conversation: {0}")]
    Raised(String),
    /// Rendering failed (an undefined operation, a type error, the instruction budget).
    #[error("the chat template failed to render: {0}")]
    Render(String),
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool` (or any role the template knows).
    pub role: String,
    pub content: String,
    /// An assistant's function calls, OpenAI's `tool_calls` list (`[{"id", "type": "function",
    /// "function": {"name", "arguments"}}]`); templates see `arguments` as JSON, not text.
    pub tool_calls: Option<serde_json::Value>,
    /// A `tool` message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }

    /// The message as the template sees it: a map `{"role": ..., "content": ...}`, with
    /// `tool_calls` (arguments parsed from their JSON text where they are text) and
    /// `tool_call_id` when present.
    fn to_value(&self) -> Value {
        let mut pairs = vec![
            ("role", Value::from(self.role.as_str())),
            ("content", Value::from(self.content.as_str())),
        ];
        if let Some(calls) = &self.tool_calls {
            let mut calls = calls.clone();
            for c in calls.as_array_mut().into_iter().flatten() {
                if let Some(a) = c.pointer_mut("/function/arguments") {
                    if let Some(parsed) = a
                        .as_str()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                    {
                        *a = parsed;
                    }
                }
            }
            pairs.push(("tool_calls", Value::from(minijinja::value::Serde(&calls))));
        }
        if let Some(id) = &self.tool_call_id {
            pairs.push(("tool_call_id", Value::from(id.as_str())));
        }
        Value::from_pairs(pairs)
    }
}

/// A compiled chat template with the special-token texts it may use.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    fallback: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The file's `tokenizer.chat_template`; when the file has none, the built-in template of
    /// its family where there is one (gemma for Gemma files, phi3 for Phi-3: what they were
    /// trained with, as Ollama ships them), else ChatML. `bos_token` and `eos_token` are the
    /// texts of `tokenizer.ggml.bos_token_id` / `eos_token_id` (empty when absent).
    pub fn from_gguf(g: &Gguf) -> Result<ChatTemplate, ChatError> {
        let bos = token_text(g, "tokenizer.ggml.bos_token_id");
        let eos = token_text(g, "tokenizer.ggml.eos_token_id");
        match g.get(KEY_CHAT_TEMPLATE) {
            None => {
                let family = match g.architecture() {
                    Ok("gemma" | "gemma2" | "gemma3") => builtin_template("gemma"),
                    Ok("phi3") => builtin_template("phi3"),
                    _ => None,
                };
                let mut t = ChatTemplate::new(family.unwrap_or(CHATML_TEMPLATE), bos, eos)?;
                t.fallback = true;
                Ok(t)
            }
            Some(_) => ChatTemplate::new(g.get_str(KEY_CHAT_TEMPLATE)?, bos, eos),
        }
    }

    /// ChatML (what a file without a template gets).
    pub fn chatml() -> ChatTemplate {
        let mut env = environment();
        // A constant template that the tests compile: cannot fail.
        let ok = env.add_template_owned(NAME, CHATML_TEMPLATE).is_ok();
        debug_assert!(ok);
        ChatTemplate {
            env,
            bos_token: String::new(),
            eos_token: String::new(),
            fallback: true,
        }
    }

    /// Compile `source` (Jinja as Hugging Face writes it).
    pub fn new(
        source: &str,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<ChatTemplate, ChatError> {
        let mut env = environment();
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| ChatError::Syntax(e.to_string()))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            fallback: false,
        })
    }

    /// Whether this is a fallback (built-in) template for a file without one.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Render the conversation; with `add_generation_prompt`, end with the text that opens the
    /// assistant's reply (`<|im_start|>assistant\n`).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with function definitions (OpenAI's `tools` list, as the
    /// template's `tools` variable: templates that support tools describe them to the model).
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| ChatError::Render(e.to_string()))?;
        let ctx = minijinja::context! {
            messages => messages.iter().map(Message::to_value).collect::<Vec<_>>(),
            tools => tools.map(|t| Value::from(minijinja::value::Serde(t))),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        tmpl.render(ctx).map_err(render_error)
    }

    /// Whether the template uses a `tools` variable (it can describe functions to the model).
    pub fn supports_tools(&self) -> bool {
        self.env
            .get_template(NAME)
            .map(|t| t.undeclared_variables(false).contains("tools"))
            .unwrap_or(false)
    }
}

/// Tokenize a rendered conversation: control tokens written in it are parsed, BOS is added when
/// the model asks for it and the template did not write it already (llama.cpp strips the
/// template's BOS instead; the ids are the same), EOS is never appended.
pub fn encode_chat(tok: &crate::tokenizer::Tokenizer, text: &str) -> Vec<u32> {
    let mut ids = tok.encode(text, false, true);
    if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
        }
    }
    ids
}

/// Positions of `cached` (the ids a context holds) that a new prompt `prompt` can keep: their
/// common prefix, but never all of `prompt` (its last token must be evaluated to give logits).
pub fn reusable_prefix(cached: &[u32], prompt: &[u32]) -> usize {
    let n = cached
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    n.min(prompt.len().saturating_sub(1))
}

/// The text of the token whose id is at `key`, or "".
fn token_text(g: &Gguf, key: &str) -> String {
    let Ok(id) = g.get_u32(key) else {
        return String::new();
    };
    let Ok(tokens) = g.get_array("tokenizer.ggml.tokens") else {
        return String::new();
    };
    tokens.strings().nth(id as usize).unwrap_or("").to_string()
}

fn render_error(e: Error) -> ChatError {
    match e.detail() {
        Some(d) if d.starts_with(RAISED) => ChatError::Raised(d[RAISED.len()..].to_string()),
        _ => ChatError::Render(e.to_string()),
    }
}

/// An environment set up as transformers sets up Jinja2 for chat templates.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // trim_blocks / lstrip_blocks as transformers' ImmutableSandboxedEnvironment; the builder only
    // fails on bad delimiters, and these are the defaults.
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_fuel(Some(FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{RAISED}{msg}"),
        ))
    });
    env.add_function("strftime_now", |fmt: String| -> Value {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Value::from(strftime_utc(&fmt, secs))
    });
    env.add_filter("tojson", tojson);
    env
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, so `{"a": 1, "b": [1, 2]}` with Python's separators and
/// no HTML escaping (minijinja's own filter escapes `<`, `>`, `&` and `'`).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => {
            if let Some(s) = v.as_str() {
                Some(s.to_string())
            } else if let Some(n) = v.as_usize().filter(|&n| n <= 64) {
                Some(" ".repeat(n))
            } else {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be a string or a small integer",
                ));
            }
        }
    };
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([i, k]) => (i.clone(), k.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ))
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let fmt = PyJson {
        item_sep,
        key_sep,
        indent,
        level: 0,
        has_value: false,
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    let res = if sort_keys.unwrap_or(false) {
        serde_json::to_value(value).and_then(|mut v| {
            sort_json_keys(&mut v);
            v.serialize(&mut ser)
        })
    } else {
        value.serialize(&mut ser)
    };
    res.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let s = String::from_utf8(out)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "tojson: not UTF-8"))?;
    Ok(Value::from_safe_string(s))
}

/// Orders every object's keys (serde_json keeps insertion order in this build).
fn sort_json_keys(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.sort_keys();
            m.values_mut().for_each(sort_json_keys);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(sort_json_keys),
        _ => {}
    }
}

/// A serde_json formatter that writes what Python's `json.dumps` writes for the same options.
struct PyJson {
    item_sep: String,
    key_sep: String,
    indent: Option<String>,
    level: usize,
    has_value: bool,
    ensure_ascii: bool,
}

impl PyJson {
    fn newline<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        if let Some(ind) = &self.indent {
            w.write_all(b"\n")?;
            for _ in 0..self.level {
                w.write_all(ind.as_bytes())?;
            }
        }
        Ok(())
    }

    fn open<W: ?Sized + io::Write>(&mut self, w: &mut W, c: &[u8]) -> io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(c)
    }

    fn close<W: ?Sized + io::Write>(&mut self, w: &mut W, c: &[u8]) -> io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(c)
    }

    fn item<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if !first {
            w.write_all(self.item_sep.as_bytes())?;
        }
        self.newline(w)
    }
}

impl serde_json::ser::Formatter for PyJson {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(self.key_sep.as_bytes())
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.ensure_ascii || fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{:04x}", u)?;
                }
            }
        }
        Ok(())
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Format `secs` since the Unix epoch as C's `strftime` does in the C locale, in UTC. Supports
/// `%a %A %b %B %c %C %d %D %e %F %h %H %I %j %m %M %n %p %R %S %t %T %u %w %y %Y %z %Z %%`;
/// an unknown conversion is copied as written.
pub fn strftime_utc(fmt: &str, secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (hour, min, sec) = (sod / 3600, sod / 60 % 60, sod % 60);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let wday0 = (days + 3).rem_euclid(7) as usize; // 0 = Monday
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = it.next() else {
            out.push('%');
            break;
        };
        let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        let s = match spec {
            'a' => DAYS[wday0][..3].to_string(),
            'A' => DAYS[wday0].to_string(),
            'b' | 'h' => MONTHS[month as usize - 1][..3].to_string(),
            'B' => MONTHS[month as usize - 1].to_string(),
            'c' => format!(
                "{} {} {day:>2} {hour:02}:{min:02}:{sec:02} {year}",
                &DAYS[wday0][..3],
                &MONTHS[month as usize - 1][..3]
            ),
            'C' => format!("{:02}", year.div_euclid(100)),
            'd' => format!("{day:02}"),
            'D' => format!("{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
            'e' => format!("{day:>2}"),
            'F' => format!("{year}-{month:02}-{day:02}"),
            'H' => format!("{hour:02}"),
            'I' => format!("{hour12:02}"),
            'j' => format!("{yday:03}"),
            'm' => format!("{month:02}"),
            'M' => format!("{min:02}"),
            'n' => "\n".to_string(),
            'p' => (if hour < 12 { "AM" } else { "PM" }).to_string(),
            'R' => format!("{hour:02}:{min:02}"),
            'S' => format!("{sec:02}"),
            't' => "\t".to_string(),
            'T' => format!("{hour:02}:{min:02}:{sec:02}"),
            'u' => (wday0 + 1).to_string(),
            'w' => ((wday0 + 1) % 7).to_string(),
            'y' => format!("{:02}", year.rem_euclid(100)),
            'Y' => year.to_string(),
            'z' => "+0000".to_string(),
            'Z' => "UTC".to_string(),
            '%' => "%".to_string(),
            other => format!("%{other}"),
        };
        out.push_str(&s);
    }
    out
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a civil date (the inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
