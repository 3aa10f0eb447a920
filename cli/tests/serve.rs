//! `ferrolm serve` over loopback, with a plain HTTP/1.1 client: greedy chat and text completions
//! equal `ferrolm chat -p` / `ferrolm run` (whole and streamed), usage counts, every error status
//! as an OpenAI error object, prompt reuse across chat turns, concurrent streams equal to the same
//! requests served alone, client disconnects, the API key, metrics, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../../tests/common/mod.rs"]
mod common;

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A running server, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// `ferrolm serve -m MODEL --port 0 ARGS`, once it listens.
    fn start(model: &std::path::Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrolm"))
            .arg("serve")
            .arg("-m")
            .arg(model)
            .args(["--port", "0", "-t", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ferrolm serve");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("ferrolm serve exited before listening:\n{seen}");
            }
            seen.push_str(&line);
            if let Some(a) = line
                .trim()
                .strip_prefix("ferrolm serve: listening on http://")
            {
                break a.to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Server { child, addr }
    }

    fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[], b"")
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        http(
            &self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of an event stream.
    fn events(&self) -> Vec<String> {
        String::from_utf8(self.body.clone())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }

    /// An OpenAI error object with this status.
    fn assert_error(&self, status: u16, what: &str) {
        assert_eq!(
            self.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        let msg = j["error"]["message"].as_str().unwrap_or_else(|| {
            panic!("{what}: no error.message in {j}");
        });
        assert!(j["error"]["type"].is_string(), "{what}: {j}");
        assert!(!msg.is_empty(), "{what}");
    }
}

/// One HTTP/1.1 request (Connection: close), the whole response (chunked bodies decoded).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A refused body (413) may close the connection before all of it is written.
    let _ = s.write_all(body);
    read_response(&mut s)
}

/// A response read from `s`: the head, then exactly Content-Length bytes, or up to the last
/// chunk, or to the end (a server may keep the connection open despite `Connection: close`, as
/// Chromium's does).
fn read_response(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let k = s.read(&mut buf).expect("read the response");
        raw.extend_from_slice(&buf[..k]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let body = raw.len() - end - 4;
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let done = match len {
                Some(n) => body >= n,
                None if head.contains("transfer-encoding: chunked") => {
                    raw.ends_with(b"\r\n0\r\n\r\n") || raw[end + 4..].starts_with(b"0\r\n\r\n")
                }
                None => k == 0,
            };
            if done {
                break;
            }
        }
        if k == 0 {
            break;
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let (mut out, mut rest) = (Vec::new(), &body[..]);
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn ferrolm_stdout(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_ferrolm"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn chat_body(messages: Value, max_tokens: u32, stream: bool) -> Value {
    json!({"model": "SmolLM2-135M-Instruct.Q4_1", "messages": messages, "temperature": 0,
           "max_tokens": max_tokens, "stream": stream,
           "stream_options": {"include_usage": true}})
}

/// The streamed text of a chat (delta.content) or text (text) event stream, its finish reason
/// and its usage chunk.
fn streamed(r: &Resp) -> (String, String, Value) {
    let ev = r.events();
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{ev:?}");
    let (mut text, mut finish, mut usage) = (String::new(), String::new(), Value::Null);
    for e in &ev[..ev.len() - 1] {
        let c: Value = serde_json::from_str(e).unwrap();
        if let Some(ch) = c["choices"].as_array().and_then(|a| a.first()) {
            if let Some(t) = ch["delta"]["content"].as_str().or(ch["text"].as_str()) {
                text.push_str(t);
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
        if !c["usage"].is_null() {
            usage = c["usage"].clone();
        }
    }
    (text, finish, usage)
}

#[test]
fn greedy_answers_equal_the_cli_whole_and_streamed() {
    let Some(m) = common::model(SMOLLM2) else {
        return;
    };
    let ms = m.to_str().unwrap();
    let srv = Server::start(&m, &["--parallel", "2", "-c", "2048"]);
    let q = "What is the capital of France?";
    let want = ferrolm_stdout(&[
        "chat", "-m", ms, "-p", q, "--temp", "0", "-n", "40", "-t", "2",
    ]);
    let want = want.strip_suffix('\n').unwrap_or(&want);
    let msgs = json!([{"role": "user", "content": q}]);

    let r = srv.post("/v1/chat/completions", &chat_body(msgs.clone(), 40, false));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["object"], "chat.completion");
    let text = j["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text, want, "chat completion vs ferrolm chat -p");
    let u = &j["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    let finish = j["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(
        (finish == "length" && c == 40) || (finish == "stop" && c <= 40),
        "{finish} after {c} tokens"
    );
    // The prompt's tokens: the template-rendered conversation as the tokenizer counts it.
    assert!(p > 5, "{u}");

    let r = srv.post("/v1/chat/completions", &chat_body(msgs, 40, true));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let (stext, sfinish, susage) = streamed(&r);
    assert_eq!(stext, want, "streamed chunks vs ferrolm chat -p");
    assert_eq!(sfinish, finish);
    assert_eq!(susage["completion_tokens"].as_u64(), Some(c));
    assert_eq!(susage["prompt_tokens"].as_u64(), Some(p));

    // /v1/completions at temperature 0 equals `ferrolm run --temp 0`.
    let prompt = "The three primary colors are";
    let want = ferrolm_stdout(&[
        "run", "-m", ms, "-p", prompt, "--temp", "0", "-n", "24", "-t", "2",
    ]);
    let body = json!({"prompt": prompt, "temperature": 0, "max_tokens": 24});
    let r = srv.post("/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["object"], "text_completion");
    let text = j["choices"][0]["text"].as_str().unwrap();
    assert_eq!(
        text,
        want.trim_end_matches('\n'),
        "completion vs ferrolm run"
    );
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (stext, _, _) = streamed(&srv.post("/v1/completions", &sbody));
    assert_eq!(stext, text, "streamed completion");
    // Token ids as the prompt give the same text.
    let ids = srv
        .post(
            "/tokenize",
            &json!({"content": prompt, "add_special": true}),
        )
        .json();
    let r = srv.post(
        "/v1/completions",
        &json!({"prompt": ids["tokens"], "temperature": 0, "max_tokens": 24}),
    );
    assert_eq!(r.json()["choices"][0]["text"].as_str().unwrap(), text);
    let back = srv
        .post("/detokenize", &json!({"tokens": ids["tokens"]}))
        .json();
    assert!(
        back["content"].as_str().unwrap().ends_with(prompt),
        "{back}"
    );

    // logprobs: the chosen token's log-probability and sorted alternatives.
    let r = srv
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": q}], "temperature": 0,
                    "max_tokens": 3, "logprobs": true, "top_logprobs": 3}),
        )
        .json();
    let lp = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lp.len(), 3, "{r}");
    for t in lp {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(t["logprob"], top[0]["logprob"], "{t}");
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
    }
}

#[test]
fn every_error_is_an_openai_error_object() {
    let Some(m) = common::model(SMOLLM2) else {
        return;
    };
    let srv = Server::start(
        &m,
        &[
            "--parallel",
            "1",
            "-c",
            "256",
            "--max-body",
            "4096",
            "--body-timeout",
            "1",
        ],
    );
    let chat = |body: &str| {
        http(
            &srv.addr,
            "POST",
            "/v1/chat/completions",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    chat("{not json").assert_error(400, "malformed JSON");
    chat("[1, 2]").assert_error(400, "not an object");
    chat(r#"{"messages": "hi"}"#).assert_error(400, "messages of the wrong type");
    chat(r#"{"messages": []}"#).assert_error(400, "no messages");
    let msgs = r#"[{"role": "user", "content": "hi"}]"#;
    for (field, value) in [
        ("temperature", r#""hot""#),
        ("temperature", "7"),
        ("max_tokens", "-3"),
        ("max_tokens", "2.5"),
        ("stream", r#""yes""#),
        ("stop", "3"),
        ("top_logprobs", "50"),
        ("n", "2"),
    ] {
        let r = chat(&format!(r#"{{"messages": {msgs}, "{field}": {value}}}"#));
        r.assert_error(400, field);
        assert_eq!(r.json()["error"]["param"], field, "{field}");
    }
    let r = chat(&format!(r#"{{"model": "gpt-4o", "messages": {msgs}}}"#));
    r.assert_error(400, "unknown model");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt-4o"));
    // Prompt + max_tokens beyond the slot's 256 positions: both numbers in the message.
    let r = chat(&format!(r#"{{"messages": {msgs}, "max_tokens": 1000}}"#));
    r.assert_error(400, "context");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("1000") && msg.contains("256"), "{msg}");
    let long = "word ".repeat(400);
    let r = srv.post("/v1/completions", &json!({ "prompt": long }));
    r.assert_error(400, "prompt over the context");
    let r = srv.post("/v1/completions", &json!({"prompt": [1, 99_999_999]}));
    r.assert_error(400, "token out of range");
    // Body over --max-body.
    let big = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(10_000));
    http(
        &srv.addr,
        "POST",
        "/v1/completions",
        &[("Content-Type", "application/json")],
        big.as_bytes(),
    )
    .assert_error(413, "body over the limit");
    // The same without Content-Length (chunked): counted as it arrives.
    let mut c = TcpStream::connect(&srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let chunk = "a".repeat(3000);
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len(),
        chunk.len()
    )
    .unwrap();
    read_response(&mut c).assert_error(413, "chunked body over the limit");
    // A body that stops arriving: 408 after --body-timeout, not a connection held forever.
    let mut c = TcpStream::connect(&srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100\r\n\r\n{{\"prompt\""
    )
    .unwrap();
    let t0 = Instant::now();
    read_response(&mut c).assert_error(408, "slow body");
    assert!(t0.elapsed() < Duration::from_secs(20));
    srv.get("/v1/nothing").assert_error(404, "unknown path");
    srv.get("/v1/chat/completions")
        .assert_error(405, "GET on a POST endpoint");
    srv.post("/tokenize", &json!({"content": 3}))
        .assert_error(400, "tokenize content type");
    srv.post("/detokenize", &json!({"tokens": [-1]}))
        .assert_error(400, "detokenize bad id");
    // Still serving after all that.
    assert_eq!(srv.get("/health").json()["status"], "ok");
    let models = srv.get("/v1/models").json();
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");

    // A full queue: one slot, no waiting room; a long generation holds the slot.
    drop(srv);
    let srv = Server::start(&m, &["--parallel", "1", "--queue", "0", "-c", "512"]);
    let mut hold = TcpStream::connect(&srv.addr).unwrap();
    hold.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = json!({"prompt": "Once upon a time", "max_tokens": 400, "stream": true,
                      "temperature": 0})
    .to_string();
    write!(
        hold,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The first bytes of the stream: the slot is taken.
    let mut first = [0u8; 64];
    hold.read_exact(&mut first).unwrap();
    let r = srv.post("/v1/completions", &json!({"prompt": "Hi", "max_tokens": 4}));
    r.assert_error(503, "queue full");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(hold);
}

#[test]
fn api_key_and_cors() {
    let Some(m) = common::model(SMOLLM2) else {
        return;
    };
    let srv = Server::start(
        &m,
        &[
            "--parallel",
            "1",
            "-c",
            "256",
            "--api-key",
            "s3cret",
            "--cors",
            "http://app.example",
        ],
    );
    let body = json!({"prompt": "Hi", "max_tokens": 2}).to_string();
    let post = |auth: Option<&str>| {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        http(&srv.addr, "POST", "/v1/completions", &h, body.as_bytes())
    };
    post(None).assert_error(401, "no key");
    post(Some("Bearer wrong")).assert_error(401, "wrong key");
    post(Some("Bearer s3cret2")).assert_error(401, "longer key");
    let ok = post(Some("Bearer s3cret"));
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    srv.get("/v1/models")
        .assert_error(401, "models without key");
    assert_eq!(srv.get("/health").status, 200, "health is open");
    let pre = http(
        &srv.addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[("Origin", "http://app.example")],
        b"",
    );
    assert_eq!(pre.status, 204);
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
}

#[test]
fn prompt_reuse_batching_disconnects_metrics_and_sigterm() {
    let Some(m) = common::model(SMOLLM2) else {
        return;
    };
    let srv = Server::start(&m, &["--parallel", "4", "-c", "4096"]);

    // Two chat turns: the second evaluates only what follows the first's cached tokens.
    let q1 = json!([{"role": "user", "content": "Name a fruit."}]);
    let r1 = srv
        .post("/v1/chat/completions", &chat_body(q1, 16, false))
        .json();
    let reply = r1["choices"][0]["message"]["content"].as_str().unwrap();
    let p1 = r1["usage"]["prompt_tokens"].as_u64().unwrap();
    let q2 = json!([{"role": "user", "content": "Name a fruit."},
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": "And a vegetable?"}]);
    let r2 = srv
        .post("/v1/chat/completions", &chat_body(q2, 16, false))
        .json();
    let (p2, t) = (
        r2["usage"]["prompt_tokens"].as_u64().unwrap(),
        &r2["timings"],
    );
    let (cache_n, prompt_n) = (
        t["cache_n"].as_u64().unwrap(),
        t["prompt_n"].as_u64().unwrap(),
    );
    assert!(
        cache_n >= p1,
        "turn 2 reused {cache_n} tokens; turn 1's prompt was {p1}: {t}"
    );
    assert_eq!(cache_n + prompt_n, p2, "{t}");
    assert_eq!(
        r2["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
        Some(cache_n)
    );

    // Four different requests at once give what each gives alone (greedy).
    let prompts = [
        "The capital of France is",
        "Once upon a time",
        "def fibonacci(n):",
        "The three primary colors are",
    ];
    let body = |p: &str| json!({"prompt": p, "temperature": 0, "max_tokens": 32, "stream": true});
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| streamed(&srv.post("/v1/completions", &body(p))).0)
        .collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| {
                let (addr, b) = (srv.addr.clone(), body(p).to_string());
                s.spawn(move || {
                    let r = http(&addr, "POST", "/v1/completions", &[], b.as_bytes());
                    streamed(&r).0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        together, alone,
        "concurrent streams vs the same requests alone"
    );

    // A client that disconnects mid-stream frees its slot.
    let mut c = TcpStream::connect(&srv.addr).unwrap();
    let b = json!({"prompt": "Once upon a time", "max_tokens": 1000, "stream": true,
                   "ignore_eos": true})
    .to_string();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        c,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    // Until the first token's event: the job is running.
    let mut seen = Vec::new();
    while !seen.windows(6).any(|w| w == b"data: ") {
        let mut b = [0u8; 256];
        let k = c.read(&mut b).unwrap();
        assert!(k > 0, "stream closed early");
        seen.extend_from_slice(&b[..k]);
    }
    let busy = |srv: &Server| {
        let text = String::from_utf8(srv.get("/metrics").body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("ferrolm_slots_busy "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(busy(&srv), 1);
    drop(c);
    let t0 = Instant::now();
    while busy(&srv) != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the disconnected stream still holds its slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = String::from_utf8(srv.get("/metrics").body).unwrap();
    for name in [
        "ferrolm_requests_total",
        "ferrolm_tokens_predicted_total",
        "ferrolm_prompt_tokens_total",
        "ferrolm_tokens_per_second",
        "ferrolm_queue_length 0",
        "ferrolm_slots_total 4",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }

    // SIGTERM: stops accepting and exits cleanly.
    let mut srv = srv;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// The official `openai` Python client (PyPI `openai`, installed by scripts/test.sh): a greedy chat
/// completion equals `ferrolm chat -p`, the streamed chunks concatenate to the same text, a text
/// completion equals `ferrolm run`, usage adds up, and errors arrive as the client's exceptions.
#[test]
fn the_openai_python_client_gets_the_cli_answers() {
    let Some(m) = common::model(SMOLLM2) else {
        return;
    };
    let has_client = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_client {
        // scripts/test.sh installs it; without it this test cannot run, and says so loudly.
        assert!(
            std::env::var_os("FERROLM_TEST_NO_OPENAI").is_some(),
            "python3 cannot import openai: run scripts/test.sh (it installs openai), or set \
             FERROLM_TEST_NO_OPENAI=1 to skip this test"
        );
        return;
    }
    let ms = m.to_str().unwrap();
    let srv = Server::start(&m, &["--parallel", "2", "-c", "2048"]);
    let (q, p) = (
        "What is the capital of France?",
        "The three primary colors are",
    );
    let script = common::root().join("cli/tests/py/openai_client.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}/v1", srv.addr))
        .args(["SmolLM2-135M-Instruct.Q4_1", q, p])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let chat = ferrolm_stdout(&[
        "chat", "-m", ms, "-p", q, "--temp", "0", "-n", "40", "-t", "2",
    ]);
    let run = ferrolm_stdout(&[
        "run", "-m", ms, "-p", p, "--temp", "0", "-n", "24", "-t", "2",
    ]);
    assert_eq!(j["chat"], chat.trim_end_matches('\n'), "{j}");
    assert_eq!(j["chat_stream"], j["chat"], "{j}");
    assert_eq!(j["completion"], run.trim_end_matches('\n'), "{j}");
    assert_eq!(j["completion_stream"], j["completion"], "{j}");
    let u = &j["chat_usage"];
    assert_eq!(
        u["total"].as_u64().unwrap(),
        u["prompt"].as_u64().unwrap() + u["completion"].as_u64().unwrap()
    );
    assert_eq!(j["chat_stream_usage"], *u);
    assert_eq!(j["models"], json!(["SmolLM2-135M-Instruct.Q4_1"]));
    assert_eq!(j["unknown_model"], 400);
    assert_eq!(j["too_long"], 400);
    // Structured outputs: every reply parses and fits the schema.
    for s in j["structured"].as_array().unwrap() {
        let v: Value =
            serde_json::from_str(s.as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {s}"));
        let o = v.as_object().unwrap_or_else(|| panic!("{s}"));
        assert_eq!(o.len(), 2, "{s}");
        assert!(
            o["city"].as_str().is_some_and(|c| c.chars().count() <= 20),
            "{s}"
        );
        assert!(o["population"].as_u64().is_some(), "{s}");
    }
    let obj: Value = serde_json::from_str(j["json_object"].as_str().unwrap()).unwrap();
    assert!(obj.is_object(), "{obj}");
    assert_eq!(j["bad_schema"], 400);
}

/// A tool call round trip with the official `openai` client on Qwen2.5 (its chat template
/// describes tools): `tool_choice: "required"` gives a `get_weather` call whose arguments fit the
/// function's schema, whole and streamed; after the tool's result the model answers in text; a
/// function named in `tool_choice` is the one called; a model without tool support says so.
#[test]
fn openai_client_tool_call_round_trip() {
    let Some(m) = common::model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf") else {
        return;
    };
    if !Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var_os("FERROLM_TEST_NO_OPENAI").is_some(),
            "python3 cannot import openai: run scripts/test.sh"
        );
        return;
    }
    let srv = Server::start(&m, &["-c", "2048"]);
    let script = common::root().join("cli/tests/py/openai_tools.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}/v1", srv.addr))
        .arg("qwen2.5-coder-0.5b-instruct-q4_k_m")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["finish"], "tool_calls", "{j}");
    let calls = j["calls"].as_array().unwrap();
    assert!(!calls.is_empty(), "{j}");
    for c in calls {
        let args: Value = serde_json::from_str(c["arguments"].as_str().unwrap()).unwrap();
        match c["name"].as_str().unwrap() {
            "get_weather" => assert!(args["city"].is_string(), "{j}"),
            "add" => assert!(args["a"].is_i64() && args["b"].is_i64(), "{j}"),
            n => panic!("unknown function {n}: {j}"),
        }
    }
    assert_eq!(calls[0]["name"], "get_weather", "{j}");
    assert_eq!(j["stream_finish"], "tool_calls", "{j}");
    let streamed = j["stream_calls"].as_array().unwrap();
    assert_eq!(streamed.len(), calls.len(), "{j}");
    assert_eq!(streamed[0]["name"], calls[0]["name"], "{j}");
    assert_eq!(streamed[0]["arguments"], calls[0]["arguments"], "{j}");
    assert!(
        j["answer"].as_str().is_some_and(|a| !a.trim().is_empty()),
        "{j}"
    );
    assert_eq!(j["answer_finish"], "stop", "{j}");
    assert_eq!(j["named"]["name"], "add", "{j}");
    let args: Value = serde_json::from_str(j["named"]["arguments"].as_str().unwrap()).unwrap();
    assert!(args["a"].is_i64() && args["b"].is_i64(), "{j}");
    drop(srv);
    // SmolLM2's template has no tools: a clear 400.
    let Some(smol) = common::model(SMOLLM2) else {
        return;
    };
    let srv = Server::start(&smol, &["-c", "512"]);
    let r = srv.post(
        "/v1/chat/completions",
        &serde_json::json!({"messages": [{"role": "user", "content": "hi"}],
                            "tools": [{"type": "function", "function": {"name": "f"}}]}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not describe tools"),
        "{}",
        r.json()
    );
}

/// The chat page in headless Chromium (Debian's `chromium`, installed by .ci/run and, as root, by
/// scripts/test.sh): the page loads, sends the question its link carries (`/?q=...`), and the
/// streamed reply appears in it, equal to `ferrolm chat -p`'s at temperature 0.
#[test]
fn the_chat_page_streams_a_reply_in_headless_chromium() {
    let Some(m) = common::model(SMOLLM2) else {
        return;
    };
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(browser) = browser else {
        assert!(
            std::env::var_os("FERROLM_TEST_NO_BROWSER").is_some(),
            "no chromium: install Debian's chromium (apt-get install chromium), or set \
             FERROLM_TEST_NO_BROWSER=1 to skip this test"
        );
        return;
    };
    let ms = m.to_str().unwrap();
    let srv = Server::start(&m, &["--parallel", "1", "-c", "1024"]);
    let q = "What is the capital of France?";
    let want = ferrolm_stdout(&[
        "chat", "-m", ms, "-p", q, "--temp", "0", "-n", "24", "-t", "2",
    ]);
    let want = want.trim_end_matches('\n');
    let profile = std::env::temp_dir().join(format!("ferrolm-chromium-{}", std::process::id()));
    let url = format!(
        "http://{}/?q=What%20is%20the%20capital%20of%20France%3F&temperature=0&max_tokens=24",
        srv.addr
    );
    let mut chrome = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium");
    // Chromium writes its DevTools port into the profile; the page's WebSocket is listed there.
    let t0 = Instant::now();
    let port = loop {
        if let Ok(s) = std::fs::read_to_string(profile.join("DevToolsActivePort")) {
            if let Some(p) = s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()) {
                break p;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "chromium did not start its DevTools"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let devtools = format!("127.0.0.1:{port}");
    let ws_path = loop {
        let list = http(&devtools, "GET", "/json/list", &[], b"").json();
        let page = list.as_array().and_then(|a| {
            a.iter().find(|t| {
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.contains("?q="))
            })
        });
        if let Some(p) = page {
            let u = p["webSocketDebuggerUrl"].as_str().unwrap();
            break u[u.find("/devtools/").unwrap()..].to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no page in {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut ws = WebSocket::connect(&devtools, &ws_path);
    // Poll the page until the reply's element says it is done; note whether it was ever seen
    // partly streamed.
    let expr = "(() => { const a = document.querySelector('.msg.assistant'); \
                const u = document.querySelector('.msg.user'); \
                return JSON.stringify({user: u && u.textContent, state: a && a.dataset.state, \
                reply: a && a.textContent}); })()";
    let (mut id, mut saw_streaming) = (0, false);
    let last = loop {
        id += 1;
        let r = ws.call(
            id,
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        let v: Value =
            serde_json::from_str(r["result"]["result"]["value"].as_str().unwrap_or("{}"))
                .unwrap_or(Value::Null);
        if v["state"] == "streaming" {
            saw_streaming = true;
        }
        if v["state"] == "done" {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the reply did not finish: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = chrome.kill();
    let _ = chrome.wait();
    let _ = std::fs::remove_dir_all(&profile);
    assert_eq!(last["user"], q);
    assert_eq!(
        last["reply"], want,
        "the page's streamed reply vs ferrolm chat -p"
    );
    assert!(saw_streaming, "the reply was never seen while streaming");
}

/// A minimal WebSocket client (RFC 6455: text frames, masked by the client) for the DevTools
/// protocol.
struct WebSocket {
    s: TcpStream,
}

impl WebSocket {
    fn connect(addr: &str, path: &str) -> WebSocket {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        WebSocket { s }
    }

    fn send(&mut self, text: &str) {
        let p = text.as_bytes();
        let mut f = vec![0x81u8];
        match p.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        // A zero mask key: the payload goes as it is.
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(p);
        self.s.write_all(&f).unwrap();
    }

    /// The next whole message (continuation frames joined; control frames skipped).
    fn recv(&mut self) -> String {
        let mut msg = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).unwrap();
            let (fin, op) = (h[0] & 0x80 != 0, h[0] & 0x0F);
            let mut len = (h[1] & 0x7F) as u64;
            if len == 126 {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).unwrap();
                len = u16::from_be_bytes(b) as u64;
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut p = vec![0u8; len as usize];
            self.s.read_exact(&mut p).unwrap();
            if op >= 8 {
                continue;
            }
            msg.extend_from_slice(&p);
            if fin {
                return String::from_utf8(msg).unwrap();
            }
        }
    }

    /// A DevTools command; its response (events in between are skipped).
    fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(&json!({"id": id, "method": method, "params": params}).to_string());
        loop {
            let v: Value = serde_json::from_str(&self.recv()).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }
}
