//! llama.cpp's command-line habits, before clap sees the arguments.
//!
//! - llama.cpp flags that ferrolm has under another name are renamed (`-sys` -> `--system`,
//!   `-r` -> `--stop`, `-ctk` -> `--cache-type`).
//! - Flags that make no sense here (GPU offload, mlock, flash attention) are dropped with a note
//!   on stderr that says what ferrolm does instead; before this, clap read `-ngl 99` as `-n gl`.
//! - Flags for features that live elsewhere (`-cnv`: `ferrolm chat`; `-hf`: no downloads) are an
//!   error that names the alternative.
//! - The value after a value-taking flag is passed through untouched, even when it starts with
//!   `-` (`-p "-- be ashamed"`): [`allow_hyphen_values`] lets clap take it too.

use std::ffi::OsString;

use clap::Command;

/// What to do with one llama.cpp flag.
enum Compat {
    /// Drop it and the values it takes, with a note.
    Ignore { values: Values, why: &'static str },
    /// Replace the flag's name by one of ours (its value follows).
    Rename(&'static str),
    /// Refuse it with this message.
    Refuse(&'static str),
}

#[derive(Clone, Copy)]
enum Values {
    None,
    One,
}

const CPU_ONLY: &str = "ferrolm runs on the CPU: there are no layers to offload";

fn lookup(flag: &str) -> Option<Compat> {
    use Compat::*;
    Some(match flag {
        "-ngl" | "--gpu-layers" | "--n-gpu-layers" | "-ngld" | "--gpu-layers-draft" => Ignore {
            values: Values::One,
            why: CPU_ONLY,
        },
        "-mg" | "--main-gpu" | "-sm" | "--split-mode" | "-ts" | "--tensor-split" | "-dev"
        | "--device" => Ignore {
            values: Values::One,
            why: CPU_ONLY,
        },
        "--mlock" | "--no-mmap" | "--mmap" => Ignore {
            values: Values::None,
            why: "the model file is always memory-mapped, never copied",
        },
        "-tb" | "--threads-batch" => Ignore {
            values: Values::One,
            why: "prompt processing uses the -t threads",
        },
        "-ub" | "--ubatch-size" => Ignore {
            values: Values::One,
            why: "the prompt is evaluated in batches of -b tokens",
        },
        "--no-warmup"
        | "--color"
        | "--log-disable"
        | "--no-display-prompt"
        | "-no-cnv"
        | "--no-conversation"
        | "--simple-io" => Ignore {
            values: Values::None,
            why: "not needed: ferrolm run prints only the generated text on stdout",
        },
        "-sys" | "--system-prompt" => Rename("--system"),
        "-r" | "--reverse-prompt" => Rename("--stop"),
        "-ctk" | "--cache-type-k" => Rename("--cache-type"),
        "-fa" => Rename("--flash-attn"),
        "-np" => Rename("--parallel"),
        "-cb" | "--cont-batching" => Ignore {
            values: Values::None,
            why: "ferrolm serve always batches the slots' tokens together",
        },
        "-ctv" | "--cache-type-v" => Ignore {
            values: Values::One,
            why: "one --cache-type serves K and V",
        },
        "-cnv" | "--conversation" | "-i" | "--interactive" | "-if" | "--interactive-first" => {
            Refuse("conversation mode is its own subcommand here: ferrolm chat -m MODEL")
        }
        "-hf" | "-hfr" | "--hf-repo" | "-hff" | "--hf-file" | "-mu" | "--model-url" => Refuse(
            "ferrolm does not download models: fetch the GGUF file (scripts/fetch-models.sh \
             fetches the test models) and pass it with -m FILE",
        ),
        _ => return None,
    })
}

/// Whether `flag` (`-x` or `--long`, without `=value`) names an argument of `cmd` that takes a
/// value.
fn takes_value(cmd: &Command, flag: &str) -> bool {
    cmd.get_arguments().any(|a| {
        if !a.get_action().takes_values() || a.is_positional() {
            return false;
        }
        if let Some(l) = flag.strip_prefix("--") {
            a.get_long() == Some(l) || a.get_all_aliases().is_some_and(|v| v.contains(&l))
        } else {
            let mut c = flag.chars();
            c.next() == Some('-')
                && c.next().is_some_and(|s| a.get_short() == Some(s))
                && c.next().is_none()
        }
    })
}

/// Rewrite `args` (the whole command line, program name first) for the subcommands that run a
/// model; `Err` is the message for a refused flag.
pub fn translate(cmd: &Command, args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(sub_name) = args.get(1).and_then(|s| s.to_str()) else {
        return Ok(args);
    };
    let Some(sub) = cmd.find_subcommand(sub_name) else {
        return Ok(args);
    };
    if matches!(sub_name, "quantize" | "inspect" | "synth") {
        return Ok(args);
    }
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    out.extend(it.next());
    out.extend(it.next());
    while let Some(a) = it.next() {
        let Some(s) = a.to_str().map(str::to_owned) else {
            out.push(a);
            continue;
        };
        if s == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        if takes_value(sub, &s) {
            out.push(a);
            out.extend(it.next());
            continue;
        }
        let (name, inline) = match s.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n.to_string(), Some(v.to_string())),
            _ => (s.clone(), None),
        };
        match lookup(&name) {
            None => out.push(a),
            Some(Compat::Rename(to)) => {
                out.push(to.into());
                if let Some(v) = inline {
                    out.push(v.into());
                } else {
                    out.extend(it.next());
                }
            }
            Some(Compat::Refuse(msg)) => return Err(format!("{name}: {msg}")),
            Some(Compat::Ignore { values, why }) => {
                let mut shown = name.clone();
                if inline.is_none() {
                    let take = match values {
                        Values::None => false,
                        Values::One => true,
                    };
                    if take {
                        if let Some(v) = it.next() {
                            shown.push(' ');
                            shown.push_str(&v.to_string_lossy());
                        }
                    }
                } else if let Some(v) = inline {
                    shown.push('=');
                    shown.push_str(&v);
                }
                eprintln!("note: {shown} ignored: {why}");
            }
        }
    }
    Ok(out)
}

/// Every value-taking option of every subcommand accepts a value that starts with `-`, as
/// llama.cpp does (`-p "-- be ashamed"`, `--stop -`).
pub fn allow_hyphen_values(cmd: Command) -> Command {
    cmd.mut_subcommands(|sc| {
        sc.mut_args(|a| {
            if a.get_action().takes_values() && !a.is_positional() {
                a.allow_hyphen_values(true)
            } else {
                a
            }
        })
    })
}
