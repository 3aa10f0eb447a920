//! `ferrolm chat` end to end, the real binary: two turns through a pseudo-terminal, KV reuse with
//! piped input, Ctrl-C and Ctrl-D, commands, built-in templates, one-shot `-p`. (The templates
//! themselves are tested in the library's `tests/chat.rs`.)

use ferrolm::chat::{ChatTemplate, Message, CHATML_TEMPLATE};

#[path = "../../tests/common/mod.rs"]
mod common;

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const QUESTION: &str = "What is the capital of France?";
const ASSISTANT: &str = "You are a helpful AI assistant.";

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferrolm");

/// The model for a test that runs the binary, or `None` (with a message) when the model is missing
/// or the binary cannot be started here: an aarch64 build under qemu-user, where the emulated
/// test cannot exec another aarch64 program without binfmt_misc. On x86-64 the binary must run.
fn model_for_bin(file: &str) -> Option<std::path::PathBuf> {
    let model = common::model(file)?;
    let runs = Command::new(BIN)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs && cfg!(not(target_arch = "x86_64")) {
        eprintln!("SKIP: {BIN} cannot be started from this test (qemu-user without binfmt_misc?)");
        return None;
    }
    Some(model)
}
/// How long one turn may take on a loaded 2-core machine.
const TURN_TIMEOUT: Duration = Duration::from_secs(240);
/// llama.cpp's ChatML, given with --chat-template so that the first prompt is exactly the one
/// tests/data/generate holds llama.cpp's greedy tokens for.
const CHATML_ARG: &str = CHATML_TEMPLATE;

/// `ferrolm chat` on a pseudo-terminal: a new session whose controlling terminal is the pty, so
/// that Ctrl-C and Ctrl-D typed into the master behave as at a keyboard.
struct PtyChat {
    master: std::fs::File,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl PtyChat {
    fn spawn(args: &[&str]) -> PtyChat {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two descriptors; name, termios and winsize may be null.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors that nothing else owns.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        for fd in [master.as_raw_fd(), slave.as_raw_fd()] {
            // SAFETY: sets FD_CLOEXEC on a descriptor we own, so the child keeps only its stdio.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let mut cmd = Command::new(BIN);
        cmd.arg("chat")
            .args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session, then the pty
        // (already stdin) as its controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd); // closes the parent's copies of the slave: reads fail once the child is gone
        let master = std::fs::File::from(master);
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), Arc::clone(&out));
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtyChat { master, child, out }
    }

    /// The screen as plain text: terminal control sequences (the line editor's bracketed-paste
    /// and cursor moves) removed, line ends as `\n`.
    fn text(&self) -> String {
        plain(&String::from_utf8_lossy(&self.out.lock().unwrap()))
    }

    /// Wait until the screen holds `n` prompts (`> `); return everything shown so far.
    fn wait_prompts(&mut self, n: usize) -> String {
        self.wait_until(&format!("{n} prompts"), |t| t.matches("> ").count() >= n)
    }

    fn wait_until(&mut self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let t = self.text();
            if cond(&t) {
                return t;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "ferrolm chat exited ({st}) before {what}; screen:\n{}",
                    self.text()
                );
            }
            if t0.elapsed() > TURN_TIMEOUT {
                let _ = self.child.kill();
                panic!("timed out waiting for {what}; screen:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("ferrolm chat did not exit; screen:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The text a terminal shows for `s`, line by line: carriage returns, cursor moves (`ESC [ n C`,
/// `ESC [ n D`) and erase-to-end-of-line (`ESC [ K`) applied as the line editor means them when it
/// redraws a line after each key; other control sequences dropped.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line: Vec<char> = Vec::new();
    let mut col = 0usize;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' if it.peek() == Some(&'[') => {
                it.next();
                let mut params = String::new();
                let mut fin = ' ';
                for c in it.by_ref() {
                    if ('@'..='~').contains(&c) {
                        fin = c;
                        break;
                    }
                    params.push(c);
                }
                let n = params.parse::<usize>().unwrap_or(1);
                match fin {
                    'C' => col += n,
                    'D' => col = col.saturating_sub(n),
                    'K' if params.is_empty() || params == "0" => line.truncate(col),
                    _ => {}
                }
            }
            '\r' => col = 0,
            '\n' => {
                out.extend(line.drain(..));
                out.push('\n');
                col = 0;
            }
            c => {
                if line.len() < col {
                    line.resize(col, ' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    out.extend(line);
    out
}

/// Greedy decoding on model `m`: at most `n` tokens, 2 threads, then `rest`.
fn greedy<'a>(m: &'a str, n: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["-m", m, "--temp", "0", "-n", n, "-t", "2"];
    v.extend_from_slice(rest);
    v
}

/// The part of the screen after the `k`-th prompt and before the next one.
fn after_prompt(screen: &str, k: usize) -> &str {
    screen.split("> ").nth(k).unwrap_or("")
}

/// Two questions typed at the terminal, two answers (greedy), then Ctrl-D: status 0.
#[test]
fn pty_two_turns_then_ctrl_d() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let mut chat = PtyChat::spawn(&greedy(m, "48", &["--system", ASSISTANT]));
    chat.wait_prompts(1);
    chat.send("What is the capital of France?\n");
    let screen = chat.wait_prompts(2);
    let first = after_prompt(&screen, 1);
    assert!(
        first.contains("What is the capital of France?\nThe capital of France is Paris.\n"),
        "first answer:\n{screen}"
    );
    chat.send("What is the capital of Germany?\n");
    let screen = chat.wait_prompts(3);
    let second = after_prompt(&screen, 2);
    assert!(
        second.contains("What is the capital of Germany?\nThe capital of Germany is Berlin.\n"),
        "second answer:\n{screen}"
    );
    chat.send("\x04");
    let st = chat.wait_exit();
    assert!(st.success(), "Ctrl-D: {st}; screen:\n{}", chat.text());
}

/// Ctrl-C during a reply stops it and returns to the prompt; the chat goes on; Ctrl-C at the
/// prompt ends it with status 0.
#[test]
fn pty_ctrl_c_stops_the_reply_then_quits() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let mut chat = PtyChat::spawn(&greedy(m, "2000", &["--system", ASSISTANT]));
    chat.wait_prompts(1);
    let q = "Write a very long story about a dragon who bakes bread.";
    chat.send(&format!("{q}\n"));
    // Some of the reply is on the screen: interrupt it.
    let echo = format!("{q}\n");
    chat.wait_until("the start of the reply", |t| {
        t.split(&echo).nth(1).is_some_and(|r| r.len() >= 30)
    });
    chat.send("\x03");
    let screen = chat.wait_prompts(2);
    assert!(
        after_prompt(&screen, 1).contains("[interrupted]"),
        "{screen}"
    );
    // The conversation goes on.
    chat.send("What is the capital of Germany?\n");
    let screen = chat.wait_prompts(3);
    let answer = after_prompt(&screen, 2).trim_start_matches("What is the capital of Germany?\n");
    assert!(answer.trim().len() > 3, "no second answer:\n{screen}");
    chat.send("\x03");
    let st = chat.wait_exit();
    assert!(
        st.success(),
        "Ctrl-C at the prompt: {st}; screen:\n{}",
        chat.text()
    );
}

/// Run `ferrolm chat` with `input` piped to stdin; (status, stdout, stderr).
fn piped(args: &[&str], input: &str) -> (ExitStatus, String, String) {
    let out = common::output_with_stdin(Command::new(BIN).arg("chat").args(args), input.as_bytes());
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The numbers of a `--verbose` turn line: (prompt tokens, reused, evaluated).
fn turn_counts(stderr: &str) -> Vec<(usize, usize, usize)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("[turn "))
        .map(|l| {
            let num = |after: &str| -> usize {
                let i = l
                    .find(after)
                    .unwrap_or_else(|| panic!("no {after:?} in {l}"))
                    + after.len();
                l[i..]
                    .trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let prompt = num(": ");
            let reused = l
                .split("tokens: ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (prompt, reused, num("cache,"))
        })
        .collect()
}

/// Piped stdin, one turn per line; the first reply is llama.cpp's greedy text for the same
/// prompt; the second turn evaluates only what is new, not the whole history.
#[test]
fn piped_turns_reuse_the_kv_cache() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let (st, out, err) = piped(
        &greedy(m, "48", &["--chat-template", CHATML_ARG, "--verbose"]),
        "What is the capital of France?\nWhat is the capital of Germany?\n",
    );
    assert!(st.success(), "{st}: {err}");
    // llama.cpp: "The capital of France is Paris." then <|im_end|> (tests/data/generate).
    assert_eq!(
        out, "The capital of France is Paris.\nThe capital of Germany is Berlin.\n",
        "stderr: {err}"
    );
    let turns = turn_counts(&err);
    assert_eq!(turns.len(), 2, "{err}");
    let (p1, r1, e1) = turns[0];
    let (p2, r2, e2) = turns[1];
    assert_eq!((r1, e1), (0, p1), "{err}");
    assert_eq!(r2 + e2, p2, "{err}");
    // Turn 1 left its prompt and 7 of its 8 generated tokens (not the final <|im_end|>) in the
    // cache; all of it matches the re-rendered history.
    assert_eq!(r2, p1 + 7, "{err}");
    assert!(
        e2 * 2 < p2,
        "the second turn evaluated {e2} of {p2} tokens: {err}"
    );
    // No prompt marker when stdin is not a terminal.
    assert!(!err.contains("> "), "{err}");
}

/// Qwen2.5 with its own template (which adds its default system message): two turns, the
/// second reusing the first's cache.
#[test]
fn piped_turns_qwen() {
    let Some(model) = model_for_bin(QWEN) else {
        return;
    };
    let m = model.to_str().unwrap();
    let (st, out, err) = piped(
        &greedy(m, "32", &["--verbose"]),
        "What is the capital of France?\nWhat is the capital of Germany?\n",
    );
    assert!(st.success(), "{st}: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"The capital of France is Paris."),
        "{out:?}\n{err}"
    );
    assert!(
        lines.iter().skip(1).any(|l| l.contains("Berlin")),
        "{out:?}\n{err}"
    );
    let turns = turn_counts(&err);
    assert_eq!(turns.len(), 2, "{err}");
    let (p1, _, _) = turns[0];
    let (p2, r2, e2) = turns[1];
    assert!(r2 > p1 && e2 * 2 < p2, "{err}");
}

/// A conversation that outgrows the context starts a fresh one (saying so), keeping the system
/// prompt; a message too long on its own is refused; the chat goes on and ends with status 0.
#[test]
fn piped_context_overflow_starts_fresh() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let long = "word ".repeat(80);
    let (st, out, err) = piped(
        &greedy(m, "12", &["-c", "64", "--system", "Be brief.", "--verbose"]),
        &format!("What is the capital of France?\nWhat is the capital of Germany?\nWhat is the capital of Italy?\n{long}\nHi\n"),
    );
    assert!(st.success(), "{st}: {err}");
    assert_eq!(
        err.matches("over the context of 64: starting a fresh context with the system prompt]")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("with the system prompt, over the context of 64: not sent]"),
        "{err}"
    );
    // Four turns answered (the long message got no reply), numbered as they were sent.
    let turns = turn_counts(&err);
    assert_eq!(turns.len(), 4, "stdout: {out:?}\nstderr: {err}");
    assert!(err.contains("[turn 4: "), "{err}");
    // One reply line per answered turn. (The first reply's first token is a near tie for this
    // 135M model, "The" against "La" within 0.15 logits, which summation order decides; the
    // second is not.)
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out:?}");
    assert_eq!(lines[1], "The capital of Germany is Berlin.", "{out:?}");
    // The fresh start reused nothing; the refused message left the conversation as it was, so the
    // turn after it reused the cache.
    assert_eq!(turns[2].1, 0, "{err}");
    assert!(turns[3].1 > 0, "{err}");
}

/// Bad flags and a bad template are one error line and a non-zero status.
#[test]
fn bad_template_flag_is_an_error() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let (st, out, err) = piped(&["-m", m, "--chat-template", "{% for %}"], "hi\n");
    assert!(!st.success());
    assert!(out.is_empty());
    assert!(err.contains("the chat template does not compile"), "{err}");
}

/// `ferrolm chat -m M -p "question"` prints only the reply, as `ollama run M "question"` does
/// (the same reply as the first turn of an interactive chat), and exits 0.
#[test]
fn one_shot_prints_only_the_reply() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let out = Command::new(BIN)
        .args(["chat", "-m", m, "--temp", "0", "-n", "48", "-t", "2"])
        .args(["--chat-template", "chatml", "-p", QUESTION])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{se}");
    assert_eq!(so, "The capital of France is Paris.\n", "stderr: {se}");
}

/// The built-in template names are the built-in templates (`chatml` gives exactly llama.cpp's
/// ChatML reply); a name that is neither built in nor Jinja is one error line.
#[test]
fn builtin_template_names() {
    for (name, src) in ferrolm::chat::BUILTIN_TEMPLATES {
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        let text = t.render(&[Message::user(QUESTION)], true).unwrap();
        assert!(text.contains(QUESTION), "{name}: {text}");
    }
    assert_eq!(
        ferrolm::chat::builtin_template("chatml"),
        Some(CHATML_TEMPLATE)
    );
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let (st, out, err) = piped(
        &greedy(m, "48", &["--chat-template", "chatml"]),
        "What is the capital of France?\n",
    );
    assert!(st.success(), "{err}");
    assert_eq!(out, "The capital of France is Paris.\n", "{err}");
    let (st, out, err) = piped(&["-m", m, "--chat-template", "chatmlx"], "hi\n");
    assert!(!st.success() && out.is_empty());
    assert!(
        err.contains("\"chatmlx\" is neither a built-in template (chatml, llama3, gemma, phi3, mistral) nor Jinja text"),
        "{err}"
    );
}

/// Commands are not messages: `/save`, `/clear`, `/load` and `/bye` act, the model never sees
/// them, and nothing after `/bye` is read. A `"""` block is one message.
#[test]
fn piped_commands_and_multiline() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolm-chat-cmd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("conv.json");
    let s = saved.to_str().unwrap();
    let input = format!(
        "\"\"\"\nWhat is the capital\nof France?\n\"\"\"\n/save {s}\n/clear\n/load {s}\nWhat is the capital of Germany?\n/frobnicate\n/bye\nWhat is the capital of Italy?\n"
    );
    let (st, out, err) = piped(
        &greedy(m, "48", &["--chat-template", "chatml", "--verbose"]),
        &input,
    );
    assert!(st.success(), "{st}: {err}");
    let turns = turn_counts(&err);
    assert_eq!(turns.len(), 2, "stdout: {out:?}\nstderr: {err}");
    assert!(out.contains("Paris") && out.contains("Berlin"), "{out:?}");
    assert!(!out.contains("Rome"), "{out:?}");
    assert!(err.contains("[saved 2 messages to "), "{err}");
    assert!(err.contains("[the conversation is cleared]"), "{err}");
    assert!(err.contains("[loaded 2 messages from "), "{err}");
    assert!(err.contains("[unknown command /frobnicate"), "{err}");
    // The multi-line message is one user message with its line break.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let msgs = json["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[0]["content"], "What is the capital\nof France?");
    assert_eq!(msgs[1]["role"], "assistant");
    // After /clear and /load the cache was empty: the second turn evaluated all of its prompt.
    assert_eq!(turns[1].1, 0, "{err}");
    // /save onto a FIFO is refused (and does not block).
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (st, _, err) = piped(
        &["-m", m, "-n", "4", "-t", "2"],
        &format!("hi\n/save {}\n/load {}\n", fifo.display(), fifo.display()),
    );
    assert!(st.success(), "{err}");
    assert!(
        err.contains("[cannot save to ") && err.contains("not a regular file"),
        "{err}"
    );
    assert!(
        err.contains("[cannot load ") && err.contains("not a regular file"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--chat-template-file` on a FIFO or a device is an error naming it, not a hang or an endless
/// read.
#[test]
fn template_file_must_be_regular() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolm-chat-tf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for f in [fifo.to_str().unwrap(), "/dev/zero"] {
        let (st, out, err) = piped(&["-m", m, "--chat-template-file", f], "hi\n");
        assert!(!st.success() && out.is_empty(), "{f}: {err}");
        assert!(err.contains("is not a regular file"), "{f}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A template that doubles a string in a loop stops at the render budget with an error, inside
/// 600 MB of address space (without the byte budget it allocates until it aborts).
#[test]
fn template_memory_is_bounded() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let bomb = r#"{% set ns = namespace(s="x" * 100000) %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 600000; exec "$0" chat -m "$1" -t 1 -n 2 --chat-template "$2""#)
        .args([BIN, model.to_str().unwrap(), bomb])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the chat template failed to render"), "{err}");
}

/// Line editing at a terminal: the left arrow moves the cursor (it does not reach the model as
/// `^[[D`), so a typo fixed in the middle of the line gives the fixed question's answer.
#[test]
fn pty_arrow_keys_edit_the_line() {
    let Some(model) = model_for_bin(SMOL) else {
        return;
    };
    let m = model.to_str().unwrap();
    let mut chat = PtyChat::spawn(&greedy(m, "48", &["--system", ASSISTANT]));
    chat.wait_prompts(1);
    chat.send("What is the capital of Franc?\x1b[De\n");
    let screen = chat.wait_prompts(2);
    assert!(
        after_prompt(&screen, 1).contains("The capital of France is Paris."),
        "{screen}"
    );
    assert!(!screen.contains("^[[D"), "{screen}");
    chat.send("/bye\n");
    let st = chat.wait_exit();
    assert!(st.success(), "/bye: {st}; screen:\n{}", chat.text());
}
