//! `ferrolm chat`: an interactive chat rendered with the model's own chat template (or a built-in
//! one by name: chatml, llama3, gemma, phi3, mistral; or Jinja text).
//!
//! `ferrolm chat -m M -p "question"` answers one question and prints only the reply, as
//! `ollama run M "question"` does. Otherwise each user turn is read from stdin and the reply
//! streams to stdout, one newline after it. On a terminal the line is edited with rustyline
//! (arrow keys, history; a paste of several lines is one message), a `> ` prompt is shown, and
//! `"""` opens and closes a multi-line message. From a pipe each line is a turn. Either way a
//! line ending in `\` continues on the next, and `/bye`, `/clear`, `/save FILE`, `/load FILE`,
//! `/help` are commands, not messages.
//!
//! The KV cache is kept between turns: every turn renders the whole conversation with
//! `add_generation_prompt`, tokenizes it, keeps the positions whose ids match the ones already
//! in the cache and evaluates only the rest (`--verbose` prints the counts).
//!
//! Ctrl-C while a reply is generated ends that reply (the part shown stays in the history);
//! Ctrl-C at the prompt, or Ctrl-D (end of input), ends the chat with status 0.
//!
//! When the conversation no longer fits in the context (`-c`), the chat says so in one line on
//! stderr and starts a fresh context that keeps the system prompt and the newest user message;
//! a message too long for the context even then is reported and dropped, and the conversation
//! goes on as it was.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use ferrolm::chat::{encode_chat, reusable_prefix, ChatTemplate, Message};
use ferrolm::generate::{generate, GenOptions, StopReason};
use ferrolm::model::{Context, Model};
use ferrolm::sampler::{Sampler, StopMatcher};
use ferrolm::tokenizer::Tokenizer;

use super::run::SamplingArgs;
use super::{CliError, CommonModelArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonModelArgs,
    /// System prompt: the conversation's first message (also `--sys`; llama.cpp's `-sys` would be
    /// read as `-s ys`, the seed).
    #[arg(long = "system", visible_alias = "sys")]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Use this chat template instead of the model's: a built-in name (chatml, llama3, gemma,
    /// phi3, mistral) or Jinja text.
    #[arg(long = "chat-template", conflicts_with = "chat_template_file")]
    pub chat_template: Option<String>,
    /// Read the Jinja chat template from a file instead of the model's.
    #[arg(long = "chat-template-file")]
    pub chat_template_file: Option<PathBuf>,
    /// Per turn, print on stderr the tokens reused from the KV cache and evaluated, and speeds.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Ask one question, print only the reply and exit (as `ollama run MODEL "question"`).
    #[arg(short = 'p', long, conflicts_with = "file")]
    pub prompt: Option<String>,
    /// The one question from a file (`-` for standard input).
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let path = args.common.model_path()?;
    let model = Arc::new(Model::load(&path)?);
    let tok = Tokenizer::from_gguf(model.gguf())?;
    let template = load_template(&args, &model)?;
    let mut ctx = Context::new(Arc::clone(&model), args.common.context_params(0))?;
    let mut sampler = Sampler::new(args.sampling.params()?, model.config().n_vocab);
    sampler.set_grammar(args.sampling.constraint(&tok)?);
    let mut stops = StopMatcher::new(Vec::<String>::new());
    let opts = GenOptions {
        n_predict: usize::try_from(args.sampling.n_predict).ok(),
        ignore_eog: false,
        special: false,
    };

    let system: Vec<Message> = args.system.iter().map(Message::system).collect();
    if args.prompt.is_some() || args.file.is_some() {
        let question = super::run::read_prompt(&args.prompt, &args.file)?;
        let mut messages = system;
        messages.push(Message::user(question));
        let ids = encode_chat(&tok, &template.render(&messages, true)?);
        if ids.len() >= ctx.n_ctx() {
            return Err(format!(
                "the conversation is {} tokens, which leaves no room for a reply in a context of {} positions (raise -c)",
                ids.len(),
                ctx.n_ctx()
            )
            .into());
        }
        let stdout = io::stdout();
        let mut out = stdout.lock();
        super::run::generate_to(
            &mut out,
            &mut ctx,
            &tok,
            &mut sampler,
            &mut stops,
            &ids,
            &opts,
        )?;
        writeln!(out)?;
        return Ok(());
    }

    let interactive = is_tty(0);
    // The editor first: it installs a SIGINT handler of its own for its lifetime, which ours
    // must replace (the terminal is in raw mode while it reads, so Ctrl-C at the prompt reaches
    // it as a key, not a signal).
    let editor = if interactive && is_tty(1) {
        Some(rustyline::DefaultEditor::new().map_err(|e| format!("line editor: {e}"))?)
    } else {
        None
    };
    let wake = Interrupt::install()?;
    let mut input = match editor {
        Some(ed) => Source::Editor(Box::new(ed)),
        None => Source::Lines(LineReader::new(0, wake.read_fd())),
    };

    if interactive {
        eprintln!(
            "ferrolm chat: {} ({} positions{}). Ctrl-C stops a reply; Ctrl-C at the prompt, Ctrl-D or /bye quits; \"\"\" opens a multi-line message; /help lists commands.",
            path.display(),
            ctx.n_ctx(),
            if template.is_fallback() { ", no chat template in the file: ChatML" } else { "" }
        );
    }

    let mut messages = system.clone();
    // The token ids held by the context, position by position.
    let mut cached: Vec<u32> = Vec::new();
    let mut turn = 0usize;

    loop {
        wake.clear();
        let text = match read_turn(&mut input, interactive)? {
            Turn::Text(t) => t,
            Turn::Quit => {
                if interactive {
                    eprintln!();
                }
                return Ok(());
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        match command(&text) {
            None => {}
            Some(Cmd::Bye) => return Ok(()),
            Some(Cmd::Help) => {
                eprintln!("/bye  quit\n/clear  forget the conversation (the system prompt stays)\n/save FILE  write the conversation as JSON\n/load FILE  continue a saved conversation\n\"\"\"  open and close a multi-line message (a line ending in \\ continues too)");
                continue;
            }
            Some(Cmd::Clear) => {
                messages = system.clone();
                ctx.reset();
                cached.clear();
                eprintln!("[the conversation is cleared]");
                continue;
            }
            Some(Cmd::Save(f)) => {
                match save(&f, &messages) {
                    Ok(()) => eprintln!("[saved {} messages to {f}]", messages.len()),
                    Err(e) => eprintln!("[cannot save to {f}: {e}]"),
                }
                continue;
            }
            Some(Cmd::Load(f)) => {
                match load(&f) {
                    Ok(m) => {
                        eprintln!("[loaded {} messages from {f}]", m.len());
                        messages = m;
                        ctx.reset();
                        cached.clear();
                    }
                    Err(e) => eprintln!("[cannot load {f}: {e}]"),
                }
                continue;
            }
            Some(Cmd::Unknown(c)) => {
                eprintln!("[unknown command {c}: /help lists the commands]");
                continue;
            }
        }
        messages.push(Message::user(text));

        let mut ids = encode_chat(&tok, &template.render(&messages, true)?);
        if ids.len() >= ctx.n_ctx() {
            // Start over with the system prompt and this message, if that fits; otherwise
            // refuse the message and keep the conversation as it was.
            let mut fresh = system.clone();
            fresh.extend(messages.last().cloned());
            let fresh_ids = encode_chat(&tok, &template.render(&fresh, true)?);
            if fresh_ids.len() >= ctx.n_ctx() {
                eprintln!(
                    "[this message is {} tokens{}, over the context of {}: not sent]",
                    fresh_ids.len(),
                    if system.is_empty() {
                        ""
                    } else {
                        " with the system prompt"
                    },
                    ctx.n_ctx()
                );
                messages.pop();
                continue;
            }
            eprintln!(
                "[the conversation is {} tokens, over the context of {}: starting a fresh context{}]",
                ids.len(),
                ctx.n_ctx(),
                if system.is_empty() { "" } else { " with the system prompt" }
            );
            messages = fresh;
            ids = fresh_ids;
            ctx.reset();
            cached.clear();
        }
        turn += 1;

        let reused = reusable_prefix(&cached, &ids);
        ctx.truncate(reused);
        let mut reply = String::new();
        let mut generated: Vec<u32> = Vec::new();
        let mut io_err = None;
        let stdout = io::stdout();
        let mut out = stdout.lock();
        sampler.reset_grammar();
        let stats = generate(
            &mut ctx,
            &tok,
            &mut sampler,
            &mut stops,
            &ids[reused..],
            &opts,
            |id, text| {
                if id != u32::MAX {
                    generated.push(id);
                }
                if !text.is_empty() {
                    reply.push_str(text);
                    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                        io_err = Some(e);
                        return false;
                    }
                }
                !wake.pending()
            },
        )?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
        writeln!(out)?;
        out.flush()?;
        drop(out);

        // What the context now holds: the prompt, then the generated tokens that were fed back
        // (generation stops before evaluating the token it ends on).
        cached = ids.clone();
        cached.extend_from_slice(&generated);
        cached.truncate(ctx.n_past());

        if stats.stop == StopReason::Callback && wake.pending() {
            eprintln!("[interrupted]");
        } else if stats.stop == StopReason::ContextFull {
            eprintln!(
                "[the context is full ({} positions): the next turn starts a fresh one]",
                ctx.n_ctx()
            );
        }
        if args.verbose {
            eprintln!(
                "[turn {turn}: {} prompt tokens: {reused} reused from the KV cache, {} evaluated ({:.1} tokens/s) | {} generated ({:.1} tokens/s) | stop: {:?} | {} of {} positions used]",
                ids.len(),
                stats.n_prompt,
                stats.prompt_tps(),
                stats.n_gen,
                stats.gen_tps(),
                stats.stop,
                ctx.n_past(),
                ctx.n_ctx()
            );
        }
        messages.push(Message::assistant(reply));
    }
}

enum Cmd {
    Bye,
    Help,
    Clear,
    Save(String),
    Load(String),
    Unknown(String),
}

/// A line that is a command (`/bye`, `/clear`, ...), or `None` for a message.
fn command(text: &str) -> Option<Cmd> {
    let t = text.trim();
    let rest = t.strip_prefix('/')?;
    let (name, arg) = match rest.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (rest, ""),
    };
    if name.is_empty() || name.contains('/') {
        return None; // "/" alone or a path such as /usr/bin: a message
    }
    Some(match (name, arg) {
        ("bye" | "exit" | "quit", _) => Cmd::Bye,
        ("help" | "?", _) => Cmd::Help,
        ("clear", _) => Cmd::Clear,
        ("save", f) if !f.is_empty() => Cmd::Save(f.to_string()),
        ("load", f) if !f.is_empty() => Cmd::Load(f.to_string()),
        _ => Cmd::Unknown(format!("/{name}")),
    })
}

/// The conversation as JSON: `{"messages": [{"role": ..., "content": ...}, ...]}`.
fn save(path: &str, messages: &[Message]) -> Result<(), CliError> {
    let json = serde_json::json!({ "messages": messages });
    let mut bytes = serde_json::to_vec_pretty(&json)?;
    bytes.push(b'\n');
    // Through a temporary file: an existing save is replaced only by a complete one, and a
    // device or FIFO is never written.
    let mut out = ferrolm::output::AtomicOutput::create(std::path::Path::new(path), None, true)?;
    out.file().write_all(&bytes)?;
    out.commit()?;
    Ok(())
}

fn load(path: &str) -> Result<Vec<Message>, CliError> {
    let bytes = super::run::read_regular(std::path::Path::new(path))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    let list = v
        .get("messages")
        .and_then(|m| m.as_array())
        .ok_or("not a saved conversation: no \"messages\" list")?;
    list.iter()
        .map(|m| {
            let role = m.get("role").and_then(|r| r.as_str());
            let content = m.get("content").and_then(|r| r.as_str());
            match (role, content) {
                (Some(r), Some(c)) => Ok(Message::new(r, c)),
                _ => Err("a message without a \"role\" and \"content\" string".into()),
            }
        })
        .collect()
}

/// `--chat-template`'s value as Jinja source: a built-in template's, or the text itself when it
/// is Jinja (`chat` and `serve`).
pub(super) fn template_source(s: &str) -> Result<String, CliError> {
    match ferrolm::chat::builtin_template(s) {
        Some(src) => Ok(src.to_string()),
        None if s.contains("{{") || s.contains("{%") => Ok(s.to_string()),
        None => {
            let names: Vec<&str> = ferrolm::chat::BUILTIN_TEMPLATES
                .iter()
                .map(|(n, _)| *n)
                .collect();
            Err(format!(
                "--chat-template {s:?} is neither a built-in template ({}) nor Jinja text",
                names.join(", ")
            )
            .into())
        }
    }
}

fn load_template(args: &Args, model: &Model) -> Result<ChatTemplate, CliError> {
    let own = ChatTemplate::from_gguf(model.gguf())?;
    let source = match (&args.chat_template, &args.chat_template_file) {
        (Some(s), _) => template_source(s)?,
        (None, Some(f)) => {
            let bytes = super::run::read_regular(f)?;
            String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", f.display()))?
        }
        (None, None) => return Ok(own),
    };
    Ok(ChatTemplate::new(
        &source,
        own.bos_token(),
        own.eos_token(),
    )?)
}

enum Turn {
    Text(String),
    Quit,
}

/// Where turns come from: the line editor on a terminal, plain lines from a pipe.
enum Source {
    Editor(Box<rustyline::DefaultEditor>),
    Lines(LineReader),
}

impl Source {
    fn line(&mut self, prompt: &str) -> Result<Input, CliError> {
        match self {
            Source::Lines(r) => Ok(r.next_line()?),
            Source::Editor(ed) => match ed.readline(prompt) {
                Ok(l) => {
                    if !l.trim().is_empty() {
                        let _ = ed.add_history_entry(l.as_str());
                    }
                    Ok(Input::Line(l))
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Ok(Input::Interrupted),
                Err(rustyline::error::ReadlineError::Eof) => Ok(Input::Eof),
                Err(e) => Err(format!("reading the terminal: {e}").into()),
            },
        }
    }
}

/// One user turn: a line (with the editor, a paste of several lines), joined with the next while
/// it ends in a backslash, or a `"""` block.
fn read_turn(input: &mut Source, interactive: bool) -> Result<Turn, CliError> {
    let show = |p: &'static str| -> &'static str {
        if interactive {
            p
        } else {
            ""
        }
    };
    let plain_prompt = |p: &str| {
        if interactive {
            eprint!("{p}");
        }
    };
    let editor = matches!(input, Source::Editor(_));
    let mut text = String::new();
    let mut block = false;
    let mut first = true;
    loop {
        let prompt = if first { show("> ") } else { show(". ") };
        if !editor {
            plain_prompt(prompt);
        }
        first = false;
        match input.line(prompt)? {
            Input::Line(line) => {
                if block {
                    if let Some(head) = line.trim_end().strip_suffix("\"\"\"") {
                        // `"""` on a line of its own closes the block without a line break.
                        if head.is_empty() && text.ends_with('\n') {
                            text.pop();
                        }
                        text.push_str(head);
                        return Ok(Turn::Text(text));
                    }
                    text.push_str(&line);
                    text.push('\n');
                    continue;
                }
                if text.is_empty() {
                    if let Some(rest) = line.trim_start().strip_prefix("\"\"\"") {
                        if let Some(one) = rest.strip_suffix("\"\"\"") {
                            return Ok(Turn::Text(one.to_string()));
                        }
                        block = true;
                        if !rest.is_empty() {
                            text.push_str(rest);
                            text.push('\n');
                        }
                        continue;
                    }
                }
                match line.strip_suffix('\\') {
                    Some(head) => {
                        text.push_str(head);
                        text.push('\n');
                    }
                    None => {
                        text.push_str(&line);
                        return Ok(Turn::Text(text));
                    }
                }
            }
            Input::Eof if !text.is_empty() => return Ok(Turn::Text(text)),
            Input::Eof | Input::Interrupted => return Ok(Turn::Quit),
        }
    }
}

fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Write end of the self-pipe the SIGINT handler writes to (-1 before `install`).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// Set by the SIGINT handler, cleared before each prompt.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_sig: libc::c_int) {
    // Only async-signal-safe work: an atomic store and write(2); errno is restored for the
    // interrupted code.
    let saved = errno();
    INTERRUPTED.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: writes one byte from a live local to a non-blocking pipe; a full pipe just fails.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
    set_errno(saved);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_errno(v: libc::c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = v }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn errno() -> libc::c_int {
    0
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_errno(_v: libc::c_int) {}

/// The SIGINT handler and its self-pipe: whichever thread takes the signal, the pipe wakes the
/// main thread's `poll` at the prompt, and the flag stops generation at the next token.
struct Interrupt {
    read: RawFd,
}

impl Interrupt {
    fn install() -> io::Result<Interrupt> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        WAKE_FD.store(fds[1], Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler only
        // touches atomics and write(2), which are async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigint as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Interrupt { read: fds[0] })
    }

    fn read_fd(&self) -> RawFd {
        self.read
    }

    /// Whether Ctrl-C was pressed since the last `clear`.
    fn pending(&self) -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    /// Forget earlier Ctrl-Cs: empty the pipe and lower the flag.
    fn clear(&self) {
        drain(self.read);
        INTERRUPTED.store(false, Ordering::SeqCst);
    }
}

fn drain(fd: RawFd) {
    let mut buf = [0u8; 64];
    // SAFETY: reads into a live local buffer of the length given; the pipe is non-blocking.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

enum Input {
    Line(String),
    Eof,
    Interrupted,
}

/// Lines of a descriptor, read with poll(2) beside the interrupt pipe so that Ctrl-C at the
/// prompt is seen at once (std's stdin retries reads interrupted by a signal).
struct LineReader {
    fd: RawFd,
    wake: RawFd,
    buf: Vec<u8>,
    eof: bool,
}

impl LineReader {
    fn new(fd: RawFd, wake: RawFd) -> LineReader {
        LineReader {
            fd,
            wake,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn next_line(&mut self) -> io::Result<Input> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Input::Line(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(Input::Eof);
                }
                let line = std::mem::take(&mut self.buf);
                return Ok(Input::Line(String::from_utf8_lossy(&line).into_owned()));
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: poll reads and writes the two pollfd entries of a live local array.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents & libc::POLLIN != 0 {
                drain(self.wake);
                return Ok(Input::Interrupted);
            }
            if fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                let mut chunk = [0u8; 4096];
                // SAFETY: reads into a live local buffer of the length given.
                let n = unsafe { libc::read(self.fd, chunk.as_mut_ptr().cast(), chunk.len()) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    self.eof = true;
                } else {
                    self.buf.extend_from_slice(&chunk[..n as usize]);
                }
            } else if fds[0].revents & libc::POLLNVAL != 0 {
                // No stdin at all (closed descriptor): end of input.
                self.eof = true;
            }
        }
    }
}
