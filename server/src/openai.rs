//! The OpenAI request bodies, read from JSON by hand so that every mistake gets an OpenAI error
//! object naming the field (`temperature must be a number, got a string`), and the response
//! objects.

use ferrolm::sampler::SamplerParams;
use serde_json::{json, Map, Value};

/// An API error: HTTP status, OpenAI `type`, message, and the offending parameter if any.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn with_status(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// A JSON value's type in words, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The request body as a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid(
            format!(
                "the request body must be a JSON object, got {}",
                kind(&other)
            ),
            None,
        )),
    }
}

/// Typed access to a request object's optional fields (null counts as absent).
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn wrong(key: &str, want: &str, v: &Value) -> ApiError {
        ApiError::invalid(format!("{key} must be {want}, got {}", kind(v)), Some(key))
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::wrong(key, "a boolean", v)),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Self::wrong(key, "a string", v)),
        }
    }

    /// A number in `range`.
    pub fn num(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if range.contains(&x) {
                    Ok(Some(x))
                } else {
                    Err(ApiError::invalid(
                        format!(
                            "{key} is {n}; expected a number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                        Some(key),
                    ))
                }
            }
            Some(v) => Err(Self::wrong(key, "a number", v)),
        }
    }

    /// An integer in `range`.
    pub fn int(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(x) if range.contains(&x) => Ok(Some(x)),
                _ => Err(ApiError::invalid(
                    format!(
                        "{key} is {n}; expected an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                    Some(key),
                )),
            },
            Some(v) => Err(Self::wrong(key, "an integer", v)),
        }
    }

    /// `stop`: a string or an array of strings.
    pub fn stops(&self) -> Result<Vec<String>, ApiError> {
        match self.get("stop") {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    v => Err(Self::wrong("stop", "a string or an array of strings", v)),
                })
                .filter(|s| !matches!(s, Ok(s) if s.is_empty()))
                .collect(),
            Some(v) => Err(Self::wrong("stop", "a string or an array of strings", v)),
        }
    }
}

/// The generation settings shared by both completion endpoints.
pub struct GenRequest {
    pub sampler: SamplerParams,
    pub stops: Vec<String>,
    pub max_tokens: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// Some(k): report log-probabilities with k alternatives.
    pub logprobs: Option<usize>,
    /// llama-server's `ignore_eos`.
    pub ignore_eos: bool,
    /// `response_format` (json_object, json_schema) or llama-server's `grammar` / `json_schema`.
    pub grammar: Option<std::sync::Arc<ferrolm::grammar::Grammar>>,
    /// Tools are on: the reply's `<tool_call>` blocks become `tool_calls`.
    pub tool_calls: bool,
}

/// The grammar a request asks for: OpenAI's `response_format` (`{"type": "text"}`,
/// `{"type": "json_object"}`, `{"type": "json_schema", "json_schema": {"schema": ...}}`), or
/// llama-server's `json_schema` (a schema) and `grammar` (GBNF text).
fn grammar(f: &Fields) -> Result<Option<std::sync::Arc<ferrolm::grammar::Grammar>>, ApiError> {
    use ferrolm::grammar::{schema_to_gbnf, Grammar};
    let from_schema = |schema: &Value, key: &str| -> Result<String, ApiError> {
        schema_to_gbnf(schema).map_err(|e| ApiError::invalid(e.to_string(), Some(key)))
    };
    let (gbnf, key) = if let Some(rf) = f.get("response_format") {
        let Value::Object(o) = rf else {
            return Err(Fields::wrong("response_format", "an object", rf));
        };
        match o.get("type").and_then(Value::as_str) {
            Some("text") => return Ok(None),
            Some("json_object") => (
                from_schema(&serde_json::json!({"type": "object"}), "response_format")?,
                "response_format",
            ),
            Some("json_schema") => {
                let schema = o
                    .get("json_schema")
                    .and_then(|j| j.get("schema"))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "response_format json_schema needs json_schema.schema",
                            Some("response_format"),
                        )
                    })?;
                (from_schema(schema, "response_format")?, "response_format")
            }
            _ => {
                return Err(ApiError::invalid(
                    "response_format.type must be text, json_object or json_schema",
                    Some("response_format"),
                ))
            }
        }
    } else if let Some(s) = f.get("json_schema") {
        (from_schema(s, "json_schema")?, "json_schema")
    } else if let Some(g) = f.get("grammar") {
        match g {
            Value::String(g) => (g.clone(), "grammar"),
            v => return Err(Fields::wrong("grammar", "a string", v)),
        }
    } else {
        return Ok(None);
    };
    Grammar::parse(&gbnf)
        .map(|g| Some(std::sync::Arc::new(g)))
        .map_err(|e| ApiError::invalid(e.to_string(), Some(key)))
}

/// Reads the sampling and streaming fields (llama-server's defaults where OpenAI's are absent).
/// `chat`: `logprobs` is a boolean with `top_logprobs` (chat) rather than an integer (legacy).
pub fn gen_request(f: &Fields, chat: bool) -> Result<GenRequest, ApiError> {
    if let Some(n) = f.int("n", i64::MIN..=i64::MAX)? {
        if n != 1 {
            return Err(ApiError::invalid(
                format!("n is {n}; this server returns one choice (n = 1)"),
                Some("n"),
            ));
        }
    }
    let mut p = SamplerParams::default();
    if let Some(t) = f.num("temperature", 0.0..=2.0)? {
        p.temp = t as f32;
    }
    if let Some(t) = f.num("top_p", 0.0..=1.0)? {
        p.top_p = t as f32;
    }
    if let Some(k) = f.int("top_k", 0..=i32::MAX as i64)? {
        p.top_k = k as i32;
    }
    if let Some(m) = f.num("min_p", 0.0..=1.0)? {
        p.min_p = m as f32;
    }
    if let Some(x) = f.num("presence_penalty", -2.0..=2.0)? {
        p.presence_penalty = x as f32;
    }
    if let Some(x) = f.num("frequency_penalty", -2.0..=2.0)? {
        p.freq_penalty = x as f32;
    }
    if let Some(x) = f.num("repeat_penalty", 0.0..=10.0)? {
        if x <= 0.0 {
            return Err(ApiError::invalid(
                "repeat_penalty must be > 0",
                Some("repeat_penalty"),
            ));
        }
        p.repeat_penalty = x as f32;
    }
    if let Some(s) = f.int("seed", i64::MIN..=i64::MAX)? {
        // -1 (llama.cpp's "random") or any other value.
        p.seed = if s == -1 {
            ferrolm::sampler::SEED_FROM_TIME
        } else {
            s as u64
        };
    }
    let max_a = f.int("max_completion_tokens", 1..=i64::MAX)?;
    let max_b = f.int("max_tokens", 1..=i64::MAX)?;
    let max_tokens = max_a.or(max_b).map(|n| n as usize);
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => Fields(o).bool("include_usage")?.unwrap_or(false),
        Some(v) => return Err(Fields::wrong("stream_options", "an object", v)),
    };
    let logprobs = if chat {
        let on = f.bool("logprobs")?.unwrap_or(false);
        let top = f.int("top_logprobs", 0..=20)?;
        if top.is_some() && !on {
            return Err(ApiError::invalid(
                "top_logprobs needs logprobs: true",
                Some("top_logprobs"),
            ));
        }
        on.then_some(top.unwrap_or(0) as usize)
    } else {
        f.int("logprobs", 0..=20)?.map(|k| k as usize)
    };
    Ok(GenRequest {
        tool_calls: false,
        grammar: grammar(f)?,
        ignore_eos: f.bool("ignore_eos")?.unwrap_or(false),
        sampler: p,
        stops: f.stops()?,
        max_tokens,
        stream,
        include_usage,
        logprobs,
    })
}

/// `messages`: role and text content of each (content as a string, or an array of text parts).
pub fn messages(f: &Fields) -> Result<Vec<ferrolm::chat::Message>, ApiError> {
    let list = match f.get("messages") {
        None => return Err(ApiError::invalid("messages is required", Some("messages"))),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(Fields::wrong("messages", "an array", v)),
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "messages must not be empty",
            Some("messages"),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let key = format!("messages[{i}]");
        let Value::Object(o) = m else {
            return Err(Fields::wrong(&key, "an object", m));
        };
        let role = match o.get("role") {
            Some(Value::String(r)) => r.clone(),
            Some(v) => return Err(Fields::wrong(&format!("{key}.role"), "a string", v)),
            None => {
                return Err(ApiError::invalid(
                    format!("{key}.role is required"),
                    Some("messages"),
                ))
            }
        };
        let content = match o.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for p in parts {
                    match (p.get("type"), p.get("text")) {
                        (Some(Value::String(t)), Some(Value::String(x))) if t == "text" => {
                            s.push_str(x)
                        }
                        _ => {
                            return Err(ApiError::invalid(
                                format!("{key}.content: only text parts are supported"),
                                Some("messages"),
                            ))
                        }
                    }
                }
                s
            }
            Some(v) => {
                return Err(Fields::wrong(
                    &format!("{key}.content"),
                    "a string or an array of text parts",
                    v,
                ))
            }
        };
        let mut msg = ferrolm::chat::Message::new(role, content);
        match o.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(v @ Value::Array(calls)) => {
                for (j, c) in calls.iter().enumerate() {
                    let name = c.pointer("/function/name").and_then(Value::as_str);
                    if name.is_none() {
                        return Err(ApiError::invalid(
                            format!("{key}.tool_calls[{j}].function.name is required"),
                            Some("messages"),
                        ));
                    }
                }
                msg.tool_calls = Some(v.clone());
            }
            Some(v) => return Err(Fields::wrong(&format!("{key}.tool_calls"), "an array", v)),
        }
        match o.get("tool_call_id") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) => msg.tool_call_id = Some(id.clone()),
            Some(v) => return Err(Fields::wrong(&format!("{key}.tool_call_id"), "a string", v)),
        }
        out.push(msg);
    }
    Ok(out)
}

/// A request's functions (`tools`) and how they may be used (`tool_choice`).
pub struct Tools {
    /// The `tools` list as given (the chat template renders it).
    pub list: Value,
    /// Each function's name and parameter schema.
    pub functions: Vec<(String, Value)>,
    pub choice: ToolChoice,
}

#[derive(Clone, PartialEq, Debug)]
pub enum ToolChoice {
    /// The model may answer or call functions.
    Auto,
    /// The model must call one or more functions.
    Required,
    /// The model must call this function.
    Named(String),
}

/// `tools` and `tool_choice` (None without tools, or with `tool_choice: "none"`).
pub fn tools(f: &Fields) -> Result<Option<Tools>, ApiError> {
    let list = match f.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(v @ Value::Array(_)) => v.clone(),
        Some(v) => return Err(Fields::wrong("tools", "an array", v)),
    };
    let mut functions = Vec::new();
    for (i, t) in list.as_array().into_iter().flatten().enumerate() {
        let bad = |what: &str| ApiError::invalid(format!("tools[{i}]: {what}"), Some("tools"));
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad("type must be \"function\""));
        }
        let name = t
            .pointer("/function/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("function.name is required"))?;
        let params = t
            .pointer("/function/parameters")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object"}));
        functions.push((name.to_string(), params));
    }
    let choice = match f.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => return Ok(None),
            _ => {
                return Err(ApiError::invalid(
                    format!("tool_choice '{s}': expected auto, none, required or a function"),
                    Some("tool_choice"),
                ))
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid("tool_choice.function.name is required", Some("tool_choice"))
                })?;
            if !functions.iter().any(|(n, _)| n == name) {
                return Err(ApiError::invalid(
                    format!("tool_choice names '{name}', which is not in tools"),
                    Some("tool_choice"),
                ));
            }
            ToolChoice::Named(name.to_string())
        }
        Some(v) => return Err(Fields::wrong("tool_choice", "a string or an object", v)),
    };
    Ok(Some(Tools {
        list,
        functions,
        choice,
    }))
}

impl Tools {
    /// The grammar of the calls `tool_choice` requires (None for auto): one or more
    /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` blocks, the format of
    /// Qwen2.5's and Qwen3's templates, each call's arguments fitting its function's schema.
    pub fn grammar(&self) -> Result<Option<std::sync::Arc<ferrolm::grammar::Grammar>>, ApiError> {
        let calls: Vec<Value> = self
            .functions
            .iter()
            .filter(|(n, _)| match &self.choice {
                ToolChoice::Named(want) => n == want,
                _ => true,
            })
            .map(|(n, p)| {
                serde_json::json!({"type": "object",
                    "properties": {"name": {"const": n}, "arguments": p},
                    "required": ["name", "arguments"]})
            })
            .collect();
        let many = match self.choice {
            ToolChoice::Auto => return Ok(None),
            ToolChoice::Required => "*",
            ToolChoice::Named(_) => "",
        };
        let schema = serde_json::json!({"anyOf": calls});
        let gbnf = ferrolm::grammar::schema_to_gbnf(&schema).map_err(|e| {
            ApiError::invalid(format!("a function's parameters: {e}"), Some("tools"))
        })?;
        let body = gbnf
            .strip_prefix("root ::= ")
            .expect("the converter writes root first");
        let text = format!(
            "root ::= tool-call (\"\\n\" tool-call){many}\n\
             tool-call ::= \"<tool_call>\\n\" call \"\\n</tool_call>\"\n\
             call ::= {body}"
        );
        ferrolm::grammar::Grammar::parse(&text)
            .map(|g| Some(std::sync::Arc::new(g)))
            .map_err(|e| ApiError::invalid(format!("tools: {e}"), Some("tools")))
    }
}

/// Splits a reply into its text and its `<tool_call>{json}</tool_call>` blocks (Qwen's format),
/// each as an OpenAI tool call (`arguments` as JSON text); blocks that are not a JSON object with
/// a `name` stay in the text.
pub fn parse_tool_calls(text: &str) -> (String, Vec<Value>) {
    let mut rest = String::new();
    let mut calls = Vec::new();
    let mut s = text;
    while let Some(i) = s.find("<tool_call>") {
        let after = &s[i + "<tool_call>".len()..];
        let Some(j) = after.find("</tool_call>") else {
            break;
        };
        let body = after[..j].trim();
        match serde_json::from_str::<Value>(body) {
            Ok(v) if v.get("name").and_then(Value::as_str).is_some() => {
                rest.push_str(&s[..i]);
                let args = v.get("arguments").cloned().unwrap_or(serde_json::json!({}));
                calls.push(serde_json::json!({
                    "id": format!("call_{}", calls.len()),
                    "type": "function",
                    "function": {"name": v["name"], "arguments": args.to_string()},
                }));
            }
            _ => rest.push_str(&s[..i + "<tool_call>".len() + j + "</tool_call>".len()]),
        }
        s = &after[j + "</tool_call>".len()..];
    }
    rest.push_str(s);
    (rest.trim().to_string(), calls)
}

/// `prompt` of `/v1/completions`: text, or token ids (a list of integers, or a one-element list
/// of either).
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

pub fn prompt(f: &Fields, n_vocab: usize) -> Result<Prompt, ApiError> {
    let bad = |v: &Value| {
        Fields::wrong(
            "prompt",
            "a string, an array of token ids, or a one-element array of either",
            v,
        )
    };
    let v = f
        .get("prompt")
        .ok_or_else(|| ApiError::invalid("prompt is required", Some("prompt")))?;
    let v = match v {
        Value::Array(a) if a.len() == 1 && !a[0].is_number() => &a[0],
        v => v,
    };
    match v {
        Value::String(s) => Ok(Prompt::Text(s.clone())),
        Value::Array(a) => {
            let mut ids = Vec::with_capacity(a.len());
            for x in a {
                match x.as_u64() {
                    Some(id) if (id as usize) < n_vocab => ids.push(id as u32),
                    Some(id) => {
                        return Err(ApiError::invalid(
                            format!("prompt token {id} is out of range (vocabulary of {n_vocab})"),
                            Some("prompt"),
                        ))
                    }
                    None => return Err(bad(v)),
                }
            }
            Ok(Prompt::Tokens(ids))
        }
        v => Err(bad(v)),
    }
}

/// The `usage` object.
pub fn usage(n_prompt: usize, n_gen: usize, n_cached: usize) -> Value {
    json!({
        "prompt_tokens": n_prompt,
        "completion_tokens": n_gen,
        "total_tokens": n_prompt + n_gen,
        "prompt_tokens_details": { "cached_tokens": n_cached },
    })
}

/// llama-server's `timings` object: `cache_n` prompt tokens reused from the slot's cache,
/// `prompt_n` evaluated.
pub fn timings(d: &crate::engine::Done) -> Value {
    let prompt_n = d.n_prompt - d.n_cached;
    let per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    json!({
        "cache_n": d.n_cached,
        "prompt_n": prompt_n,
        "prompt_ms": d.prompt_ms,
        "prompt_per_second": per_s(prompt_n, d.prompt_ms),
        "predicted_n": d.n_gen,
        "predicted_ms": d.gen_ms,
        "predicted_per_second": per_s(d.n_gen, d.gen_ms),
        "slot": d.slot,
    })
}
