//! `ferrolm chat`: an interactive chat rendered with the model's own chat template.
//!
//! Each line read from stdin is a user turn (a line ending in `\` continues on the next line);
//! the reply streams to stdout, one newline after it. On a terminal a `> ` prompt goes to stderr,
//! so stdout holds only the replies.
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

use ferrolm::chat::{reusable_prefix, ChatTemplate, Message};
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
    /// Most tokens per reply (-1 = until end of generation or a full context).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    pub n_predict: i64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Use this Jinja chat template instead of the model's.
    #[arg(long = "chat-template", conflicts_with = "chat_template_file")]
    pub chat_template: Option<String>,
    /// Read the Jinja chat template from a file instead of the model's.
    #[arg(long = "chat-template-file")]
    pub chat_template_file: Option<PathBuf>,
    /// Per turn, print on stderr the tokens reused from the KV cache and evaluated, and speeds.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let path = args.common.model_path()?;
    let model = Arc::new(Model::load(&path)?);
    let tok = Tokenizer::from_gguf(model.gguf())?;
    let template = load_template(&args, &model)?;
    let mut ctx = Context::new(Arc::clone(&model), args.common.context_params(0))?;
    let mut sampler = Sampler::new(args.sampling.params()?, model.config().n_vocab);
    let mut stops = StopMatcher::new(Vec::<String>::new());
    let opts = GenOptions {
        n_predict: usize::try_from(args.n_predict).ok(),
        ignore_eog: false,
        special: false,
    };

    let interactive = is_tty(0);
    let wake = Interrupt::install()?;
    let mut input = LineReader::new(0, wake.read_fd());

    if interactive {
        eprintln!(
            "ferrolm chat: {} ({} positions{}). Ctrl-C stops a reply; Ctrl-C at the prompt or Ctrl-D quits; end a line with \\ to continue it.",
            path.display(),
            ctx.n_ctx(),
            if template.is_fallback() { ", no chat template in the file: ChatML" } else { "" }
        );
    }

    let system: Vec<Message> = args.system.iter().map(Message::system).collect();
    let mut messages = system.clone();
    // The token ids held by the context, position by position.
    let mut cached: Vec<u32> = Vec::new();
    let mut turn = 0usize;

    loop {
        wake.clear();
        if interactive {
            eprint!("> ");
        }
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

fn load_template(args: &Args, model: &Model) -> Result<ChatTemplate, CliError> {
    let own = ChatTemplate::from_gguf(model.gguf())?;
    let source = match (&args.chat_template, &args.chat_template_file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => return Ok(own),
    };
    Ok(ChatTemplate::new(
        &source,
        own.bos_token(),
        own.eos_token(),
    )?)
}

/// Tokenize a rendered conversation: control tokens written in it are parsed, BOS is added when
/// the model asks for it and the template did not write it already (llama.cpp strips the
/// template's BOS instead; the ids are the same), EOS is never appended.
fn encode_chat(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let mut ids = tok.encode(text, false, true);
    if let Some(bos) = tok.bos().filter(|_| tok.add_bos()) {
        if ids.first() != Some(&bos) {
            ids.insert(0, bos);
        }
    }
    ids
}

enum Turn {
    Text(String),
    Quit,
}

/// One user turn: a line, joined with the next while it ends in a backslash.
fn read_turn(input: &mut LineReader, interactive: bool) -> Result<Turn, CliError> {
    let mut text = String::new();
    loop {
        match input.next_line()? {
            Input::Line(line) => match line.strip_suffix('\\') {
                Some(head) => {
                    text.push_str(head);
                    text.push('\n');
                    if interactive {
                        eprint!(". ");
                    }
                }
                None => {
                    text.push_str(&line);
                    return Ok(Turn::Text(text));
                }
            },
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
