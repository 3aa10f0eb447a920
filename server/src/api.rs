//! The HTTP endpoints: OpenAI's `/v1/chat/completions`, `/v1/completions`, `/v1/models`, and
//! llama-server's `/health`, `/tokenize`, `/detokenize`, `/metrics`; the chat page at `/`.
//! Every error is an OpenAI error object with its status.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferrolm::chat::ChatTemplate;
use ferrolm::tokenizer::Tokenizer;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::engine::{Done, Event, Handle, Job, SubmitError, Token};
use crate::openai::{self, ApiError, Fields, GenRequest, Prompt};

/// What every handler reads.
pub struct AppState {
    pub handle: Handle,
    pub tok: Arc<Tokenizer>,
    pub template: ChatTemplate,
    /// The name `/v1/models` lists (the model file's name without `.gguf`).
    pub model_id: String,
    /// Positions per slot.
    pub n_ctx: usize,
    pub n_slots: usize,
    pub api_key: Option<String>,
    pub cors: Option<HeaderValue>,
    pub created: u64,
    pub body_limit: usize,
    /// How long a request body may take to arrive (a client that stops sending gets 408).
    pub body_timeout: std::time::Duration,
}

type St = State<Arc<AppState>>;

/// `v` as an `application/json` response with this status.
fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// `v` as a 200 `application/json` response.
fn ok_json(v: Value) -> OkJson {
    OkJson(v)
}

struct OkJson(Value);

impl IntoResponse for OkJson {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = json_response(status, &self.body());
        if self.status == 503 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(state.body_limit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            guard,
        ))
        .with_state(state)
}

/// `--api-key` (Bearer token, compared in constant time; `/` and `/health` are open) and
/// `--cors` (the allowed origin on every response; preflight requests answered here).
async fn guard(State(st): St, req: Request, next: Next) -> Response {
    if let Some(origin) = &st.cors {
        if req.method() == Method::OPTIONS {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            return r;
        }
    }
    let open = matches!(req.uri().path(), "/" | "/health");
    if let (Some(key), false) = (&st.api_key, open) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), key.as_bytes()) {
            return ApiError::with_status(
                401,
                "authentication_error",
                "invalid or missing API key (Authorization: Bearer KEY)",
            )
            .code("invalid_api_key")
            .into_response();
        }
    }
    let mut r = match whole_body(&st, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    if let Some(origin) = &st.cors {
        r.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    r
}

/// `req` with its body read here, whole, within the size limit and the time limit (POST only): a
/// client that stops sending mid-body is answered 408 instead of holding its connection forever.
async fn whole_body(st: &AppState, req: Request) -> Result<Request, ApiError> {
    if req.method() != Method::POST {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.body_limit as u64) {
        return Err(too_large(st.body_limit));
    }
    let b = read_body(body, st.body_limit, st.body_timeout).await?;
    Ok(Request::from_parts(parts, Body::from(b)))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::with_status(
        413,
        "invalid_request_error",
        format!("the request body is over the limit of {limit} bytes"),
    )
}

/// The whole body, at most `limit` bytes, within `timeout`.
async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    use tokio_stream::StreamExt;
    let collect = async {
        let mut s = body.into_data_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::invalid(format!("the request body could not be read: {e}"), None)
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(timeout, collect).await.map_err(|_| {
        ApiError::with_status(
            408,
            "invalid_request_error",
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )
    })?
}

/// a == b, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

async fn not_found(req: Request) -> ApiError {
    ApiError::with_status(
        404,
        "not_found_error",
        format!("no endpoint {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::with_status(
        405,
        "invalid_request_error",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("page.html"),
    )
        .into_response()
}

async fn health() -> Response {
    ok_json(json!({"status": "ok"})).into_response()
}

async fn models(State(st): St) -> Response {
    ok_json(json!({
        "object": "list",
        "data": [{
            "id": st.model_id,
            "object": "model",
            "created": st.created,
            "owned_by": "ferrolm",
            "meta": { "n_ctx_slot": st.n_ctx, "n_slots": st.n_slots, "n_vocab": st.tok.n_vocab() },
        }],
    }))
    .into_response()
}

/// The body `guard` has already read whole and within the limit (`DefaultBodyLimit` is set to
/// the same limit, so the extractor never refuses it for its size).
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| ApiError::invalid(format!("the request body could not be read: {r}"), None))
}

/// `model`, when given, must be the one this server serves.
fn check_model(st: &AppState, f: &Fields) -> Result<(), ApiError> {
    match f.str("model")? {
        Some(m) if m != st.model_id && m.strip_suffix(".gguf") != Some(st.model_id.as_str()) => {
            Err(ApiError::invalid(
                format!(
                    "model '{m}' is not served here (this server serves '{}')",
                    st.model_id
                ),
                Some("model"),
            )
            .code("model_not_found"))
        }
        _ => Ok(()),
    }
}

/// The slot's room for `n_prompt` tokens and the requested completion; the completion's length.
fn fit(st: &AppState, n_prompt: usize, max_tokens: Option<usize>) -> Result<usize, ApiError> {
    if n_prompt == 0 {
        return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
    }
    if n_prompt >= st.n_ctx {
        return Err(ApiError::invalid(
            format!(
                "the prompt is {n_prompt} tokens, which leaves no room for a completion in a slot \
                 context of {} positions",
                st.n_ctx
            ),
            None,
        )
        .code("context_length_exceeded"));
    }
    match max_tokens {
        Some(m) if n_prompt + m > st.n_ctx => Err(ApiError::invalid(
            format!(
                "the prompt ({n_prompt} tokens) plus max_tokens ({m}) is {} tokens, over the \
                 slot context of {} positions",
                n_prompt + m,
                st.n_ctx
            ),
            Some("max_tokens"),
        )
        .code("context_length_exceeded")),
        Some(m) => Ok(m),
        None => Ok(st.n_ctx - n_prompt),
    }
}

/// Queues a job; its events.
fn submit(
    st: &AppState,
    prompt: Vec<u32>,
    g: &GenRequest,
    max_tokens: usize,
) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let job = Job {
        prompt,
        sampler: g.sampler,
        stops: g.stops.clone(),
        max_tokens,
        logprobs: g.logprobs,
        ignore_eos: g.ignore_eos,
        grammar: g.grammar.clone(),
        events: tx,
    };
    match st.handle.submit(job) {
        Ok(()) => Ok(rx),
        Err(SubmitError::QueueFull) => Err(ApiError::with_status(
            503,
            "server_busy",
            format!(
                "all {} slots are busy and the queue is full; retry later",
                st.n_slots
            ),
        )),
        Err(SubmitError::ShuttingDown) => Err(ApiError::with_status(
            503,
            "server_busy",
            "the server is shutting down",
        )),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn next_id(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{prefix}-{:x}{:04x}",
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A token's text as the logprobs objects show it.
fn piece(tok: &Tokenizer, id: u32) -> (String, Vec<u8>) {
    let b = tok.token_to_piece(id, true).to_vec();
    (String::from_utf8_lossy(&b).into_owned(), b)
}

/// Chat's logprobs entry for one token.
fn chat_logprob(tok: &Tokenizer, t: &Token) -> Option<Value> {
    let (id, lp) = (t.id?, t.logprob.as_ref()?);
    let (text, bytes) = piece(tok, id);
    let top: Vec<Value> = lp
        .top
        .iter()
        .map(|&(i, l)| {
            let (text, bytes) = piece(tok, i);
            json!({"token": text, "logprob": l, "bytes": bytes})
        })
        .collect();
    Some(json!({"token": text, "logprob": lp.logprob, "bytes": bytes, "top_logprobs": top}))
}

/// Which endpoint a generation answers.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

async fn chat_completions(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = async {
        let body = body_bytes(body)?;
        let obj = openai::parse_object(&body)?;
        let f = Fields(&obj);
        check_model(&st, &f)?;
        let messages = openai::messages(&f)?;
        let mut g = openai::gen_request(&f, true)?;
        let tools = openai::tools(&f)?;
        if let Some(t) = &tools {
            if !st.template.supports_tools() {
                return Err(ApiError::invalid(
                    "this model's chat template does not describe tools to the model",
                    Some("tools"),
                ));
            }
            if let Some(tg) = t.grammar()? {
                if g.grammar.is_some() {
                    return Err(ApiError::invalid(
                        "tool_choice required or a named function cannot be combined with \
                         response_format or a grammar",
                        Some("tool_choice"),
                    ));
                }
                g.grammar = Some(tg);
            }
            g.tool_calls = true;
        }
        let text = st
            .template
            .render_with_tools(&messages, tools.as_ref().map(|t| &t.list), true)
            .map_err(|e| {
                ApiError::invalid(
                    format!("the chat template failed on these messages: {e}"),
                    Some("messages"),
                )
            })?;
        let ids = ferrolm::chat::encode_chat(&st.tok, &text);
        let max = fit(&st, ids.len(), g.max_tokens)?;
        let rx = submit(&st, ids, &g, max)?;
        Ok::<_, ApiError>((g, rx))
    }
    .await;
    match r {
        Ok((g, rx)) => respond(st, Kind::Chat, g, rx).await,
        Err(e) => e.into_response(),
    }
}

async fn completions(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = (|| {
        let body = body_bytes(body)?;
        let obj = openai::parse_object(&body)?;
        let f = Fields(&obj);
        check_model(&st, &f)?;
        let ids = match openai::prompt(&f, st.tok.n_vocab())? {
            Prompt::Text(s) => st.tok.encode(&s, true, true),
            Prompt::Tokens(t) => t,
        };
        let g = openai::gen_request(&f, false)?;
        let max = fit(&st, ids.len(), g.max_tokens)?;
        let rx = submit(&st, ids, &g, max)?;
        Ok::<_, ApiError>((g, rx))
    })();
    match r {
        Ok((g, rx)) => respond(st, Kind::Text, g, rx).await,
        Err(e) => e.into_response(),
    }
}

/// The JSON of a whole (non-streamed) answer, or the stream of chunks.
async fn respond(
    st: Arc<AppState>,
    kind: Kind,
    g: GenRequest,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Response {
    let id = next_id(if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    });
    let created = now();
    if g.stream {
        return stream(st, kind, g, rx, id, created);
    }
    let mut text = String::new();
    let mut lps: Vec<Value> = Vec::new();
    let (mut toks, mut tok_lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    let done = loop {
        match rx.recv().await {
            Some(Event::Token(t)) => {
                if g.logprobs.is_some() {
                    if kind == Kind::Chat {
                        lps.extend(chat_logprob(&st.tok, &t));
                    } else if let (Some(id), Some(lp)) = (t.id, &t.logprob) {
                        offsets.push(text.len());
                        toks.push(piece(&st.tok, id).0);
                        tok_lps.push(lp.logprob);
                        let m: serde_json::Map<String, Value> = lp
                            .top
                            .iter()
                            .map(|&(i, l)| (piece(&st.tok, i).0, json!(l)))
                            .collect();
                        tops.push(Value::Object(m));
                    }
                }
                text.push_str(&t.text);
            }
            Some(Event::Done(d)) => break d,
            None => {
                return ApiError::with_status(500, "server_error", "the engine stopped")
                    .into_response()
            }
        }
    };
    let usage = openai::usage(done.n_prompt, done.n_gen, done.n_cached);
    let (message, finish) = chat_message(&g, text.clone(), done.finish.as_str());
    let body = match kind {
        Kind::Chat => json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": st.model_id,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": g.logprobs.map(|_| json!({"content": lps})),
                "finish_reason": finish,
            }],
            "usage": usage,
            "timings": openai::timings(&done),
        }),
        Kind::Text => json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": st.model_id,
            "choices": [{
                "index": 0,
                "text": text,
                "logprobs": g.logprobs.map(|_| json!({
                    "tokens": toks, "token_logprobs": tok_lps, "top_logprobs": tops,
                    "text_offset": offsets,
                })),
                "finish_reason": done.finish.as_str(),
            }],
            "usage": usage,
            "timings": openai::timings(&done),
        }),
    };
    ok_json(body).into_response()
}

/// The assistant message of a reply and its finish reason: with tools on, the reply's
/// `<tool_call>` blocks become `tool_calls` (content null when nothing else was said) and the
/// finish reason `tool_calls`.
fn chat_message(g: &GenRequest, text: String, finish: &'static str) -> (Value, &'static str) {
    if g.tool_calls {
        let (rest, calls) = openai::parse_tool_calls(&text);
        if !calls.is_empty() {
            let content = if rest.is_empty() {
                Value::Null
            } else {
                json!(rest)
            };
            return (
                json!({"role": "assistant", "content": content, "tool_calls": calls}),
                "tool_calls",
            );
        }
    }
    (json!({"role": "assistant", "content": text}), finish)
}

/// Server-sent events: `data: {chunk}` per token, a last chunk with `finish_reason`, the usage
/// chunk when asked (`stream_options.include_usage`), then `data: [DONE]`. A task forwards the
/// engine's events; when the client goes away the body is dropped, the task's send fails and it
/// drops the engine's receiver, which cancels the job before the next step.
fn stream(
    st: Arc<AppState>,
    kind: Kind,
    g: GenRequest,
    mut rx: mpsc::UnboundedReceiver<Event>,
    id: String,
    created: u64,
) -> Response {
    let (tx, body_rx) = mpsc::channel::<Result<String, Infallible>>(64);
    tokio::spawn(async move {
        let chunk = |choice: Value, usage: Option<Value>| {
            let mut c = json!({
                "id": id,
                "object": if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
                "created": created,
                "model": st.model_id,
                "choices": if choice.is_null() { json!([]) } else { json!([choice]) },
            });
            if let Some(u) = usage {
                c["usage"] = u;
            }
            format!("data: {c}\n\n")
        };
        if kind == Kind::Chat {
            let first = json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
            if tx.send(Ok(chunk(first, None))).await.is_err() {
                return;
            }
        }
        let mut held = String::new();
        let done: Done = loop {
            let ev = rx.recv().await;
            let c = match ev {
                Some(Event::Token(t)) => {
                    if g.tool_calls && kind == Kind::Chat {
                        // Whether the reply is a call is known at its end: sent then.
                        held.push_str(&t.text);
                        continue;
                    }
                    if t.text.is_empty() && (g.logprobs.is_none() || t.logprob.is_none()) {
                        continue;
                    }
                    match kind {
                        Kind::Chat => {
                            let lp = g.logprobs.and_then(|_| chat_logprob(&st.tok, &t));
                            chunk(
                                json!({"index": 0, "delta": {"content": t.text},
                                       "logprobs": lp.map(|l| json!({"content": [l]})),
                                       "finish_reason": null}),
                                None,
                            )
                        }
                        Kind::Text => chunk(
                            json!({"index": 0, "text": t.text, "logprobs": null, "finish_reason": null}),
                            None,
                        ),
                    }
                }
                Some(Event::Done(d)) => break d,
                None => return,
            };
            if tx.send(Ok(c)).await.is_err() {
                return;
            }
        };
        let mut finish = done.finish.as_str();
        if g.tool_calls && kind == Kind::Chat {
            let (message, f) = chat_message(&g, std::mem::take(&mut held), finish);
            finish = f;
            let mut delta = json!({"content": message["content"]});
            if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
                let calls: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let mut c = c.clone();
                        c["index"] = json!(i);
                        c
                    })
                    .collect();
                delta["tool_calls"] = json!(calls);
            }
            let c = chunk(
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}),
                None,
            );
            if tx.send(Ok(c)).await.is_err() {
                return;
            }
        }
        let last = match kind {
            Kind::Chat => {
                json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish})
            }
            Kind::Text => {
                json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish})
            }
        };
        let mut out = chunk(last, None);
        if g.include_usage {
            let mut u = openai::usage(done.n_prompt, done.n_gen, done.n_cached);
            u["timings"] = openai::timings(&done);
            out.push_str(&chunk(Value::Null, Some(u)));
        }
        out.push_str("data: [DONE]\n\n");
        let _ = tx.send(Ok(out)).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(body_rx));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn tokenize(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = (|| {
        let body = body_bytes(body)?;
        let obj = openai::parse_object(&body)?;
        let f = Fields(&obj);
        let content = f
            .str("content")?
            .ok_or_else(|| ApiError::invalid("content is required", Some("content")))?;
        let add_special = f.bool("add_special")?.unwrap_or(false);
        let parse_special = f.bool("parse_special")?.unwrap_or(true);
        let with_pieces = f.bool("with_pieces")?.unwrap_or(false);
        let ids = st.tok.encode(content, add_special, parse_special);
        let tokens: Vec<Value> = if with_pieces {
            ids.iter()
                .map(|&i| json!({"id": i, "piece": piece(&st.tok, i).0}))
                .collect()
        } else {
            ids.iter().map(|&i| json!(i)).collect()
        };
        Ok::<_, ApiError>(ok_json(json!({ "tokens": tokens })).into_response())
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn detokenize(State(st): St, body: Result<Bytes, BytesRejection>) -> Response {
    let r = (|| {
        let body = body_bytes(body)?;
        let obj = openai::parse_object(&body)?;
        let n_vocab = st.tok.n_vocab();
        let ids = match obj.get("tokens") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v.as_u64() {
                    Some(i) if (i as usize) < n_vocab => Ok(i as u32),
                    _ => Err(ApiError::invalid(
                        format!("tokens must be token ids below {n_vocab}, got {v}"),
                        Some("tokens"),
                    )),
                })
                .collect::<Result<Vec<u32>, _>>()?,
            _ => {
                return Err(ApiError::invalid(
                    "tokens (an array of token ids) is required",
                    Some("tokens"),
                ))
            }
        };
        Ok(ok_json(json!({ "content": st.tok.decode(&ids, false) })).into_response())
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn metrics(State(st): St) -> Response {
    let m = &st.handle.metrics;
    let gen = m.generated_tokens.load(Ordering::Relaxed);
    let busy_s = m.busy_us.load(Ordering::Relaxed) as f64 / 1e6;
    let tps = if busy_s > 0.0 {
        gen as f64 / busy_s
    } else {
        0.0
    };
    let mut s = String::new();
    let mut put = |name: &str, kind: &str, help: &str, v: String| {
        s.push_str(&format!(
            "# HELP ferrolm_{name} {help}\n# TYPE ferrolm_{name} {kind}\nferrolm_{name} {v}\n"
        ));
    };
    put(
        "requests_total",
        "counter",
        "Generation requests accepted.",
        m.requests.load(Ordering::Relaxed).to_string(),
    );
    put(
        "requests_rejected_total",
        "counter",
        "Generation requests refused because the queue was full.",
        m.rejected.load(Ordering::Relaxed).to_string(),
    );
    put(
        "prompt_tokens_total",
        "counter",
        "Prompt tokens evaluated (cached ones not counted).",
        m.prompt_tokens.load(Ordering::Relaxed).to_string(),
    );
    put(
        "tokens_predicted_total",
        "counter",
        "Tokens generated.",
        gen.to_string(),
    );
    put(
        "tokens_per_second",
        "gauge",
        "Tokens generated per second of forward passes.",
        format!("{tps:.3}"),
    );
    put(
        "queue_length",
        "gauge",
        "Requests waiting for a slot.",
        m.queued.load(Ordering::Relaxed).to_string(),
    );
    put(
        "slots_busy",
        "gauge",
        "Slots running a request.",
        m.busy_slots.load(Ordering::Relaxed).to_string(),
    );
    put("slots_total", "gauge", "Slots.", st.n_slots.to_string());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn key_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(constant_time_eq(b"", b""));
    }
}
