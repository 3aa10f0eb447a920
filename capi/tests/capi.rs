//! The C ABI as its users see it: the checked-in header compiles as strict C and C++; the C and
//! C++ examples build with `-Wall -Wextra -Werror` and run under AddressSanitizer (leak checks
//! on) and UBSan against the cdylib, and generate.c prints exactly what `ferrolm run` prints for
//! the same prompt, -n and seed; errors.c walks every error path; generate.c also links against
//! the staticlib; the pkg-config file gives working flags; a Python ctypes script loads the
//! shared library and generates the same text.
//!
//! The libraries and the `ferrolm` binary come from `cargo build --release -p ferrolm-capi -p
//! ferrolm-cli` run by the first test that needs them (`cargo test` builds neither for this crate). Each part says "skipped" and passes when gcc,
//! g++, python3 or the model is missing, or when the tools are for another architecture than the
//! library (the aarch64 run under qemu).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const SANITIZE: &[&str] = &[
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-g",
];

#[path = "../../tests/common/mod.rs"]
mod common;

/// The workspace root (models, scripts).
fn repo() -> PathBuf {
    common::root()
}

/// This crate's directory (the header, the examples).
fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> Option<PathBuf> {
    let p = repo().join(MODEL);
    p.exists().then_some(p)
}

/// The directory of a release build of the library (libferrolm.so and libferrolm.a) and of the
/// `ferrolm` binary, built here once per test run. The release profile keeps the sanitized runs fast. Same target directory as this
/// test's build (`target/`), so it is incremental.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // CARGO_TARGET_TMPDIR is TARGET/tmp.
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target directory");
        let dir = common::release_build(target_dir);
        for lib in ["libferrolm.so", "libferrolm.a"] {
            assert!(
                dir.join(lib).exists(),
                "no {lib} in {} (capi's [lib] crate-type must list cdylib and staticlib)",
                dir.display()
            );
        }
        dir
    })
}

fn out_dir(test: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("capi_{test}_{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create the test's directory");
    d
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The machine a tool builds for (gcc, g++) or runs on (python3): "x86_64", "aarch64", ...
fn tool_arch(tool: &str) -> Option<String> {
    let o = if tool == "python3" {
        Command::new(tool)
            .args(["-c", "import platform; print(platform.machine())"])
            .output()
    } else {
        Command::new(tool).arg("-dumpmachine").output()
    };
    let o = o.ok().filter(|o| o.status.success())?;
    text(&o.stdout).trim().split('-').next().map(str::to_string)
}

/// The reason to skip, if a tool or the model is missing, or the tool is for another machine
/// than the library (the aarch64 tests under qemu use the host's x86-64 gcc and python3).
fn missing(tools: &[&str]) -> Option<String> {
    for t in tools {
        if !have(t) {
            return Some(format!("{t} is not installed"));
        }
        let arch = tool_arch(t).unwrap_or_default();
        if arch != std::env::consts::ARCH {
            return Some(format!(
                "{t} is for {arch:?}, the library for {:?}",
                std::env::consts::ARCH
            ));
        }
    }
    if model().is_none() {
        return Some(format!("{MODEL} is missing (scripts/fetch-models.sh)"));
    }
    None
}

macro_rules! skip_unless {
    ($($tool:expr),*) => {
        if let Some(why) = missing(&[$($tool),*]) {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Compile `src` (relative to `capi/`) into `out` with `-Wall -Wextra -Werror` and `extra`.
fn compile(compiler: &str, std: &str, src: &str, out: &Path, extra: &[&str]) {
    let mut cmd = Command::new(compiler);
    cmd.arg(std)
        .args(["-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(crate_dir().join(src))
        .arg("-o")
        .arg(out)
        .args(extra);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(
        o.status.success(),
        "{compiler} {src} failed:\n{cmd:?}\n{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// Flags to compile against the build tree's header and link the cdylib: from the pkg-config
/// file (scripts/gen-pc.sh) when pkg-config is installed, else by hand.
fn link_flags(dir: &Path) -> Vec<String> {
    let lib = lib_dir();
    let include = crate_dir().join("include");
    if have("pkg-config") {
        let o = Command::new("bash")
            .arg(repo().join("scripts/gen-pc.sh"))
            .arg("--prefix")
            .arg(repo())
            .arg("--libdir")
            .arg(lib)
            .arg("--includedir")
            .arg(&include)
            .arg("-o")
            .arg(dir.join("ferrolm.pc"))
            .output()
            .expect("run scripts/gen-pc.sh");
        assert!(o.status.success(), "gen-pc.sh: {}", text(&o.stderr));
        let o = Command::new("pkg-config")
            .args(["--cflags", "--libs", "ferrolm"])
            .env("PKG_CONFIG_PATH", dir)
            .output()
            .expect("run pkg-config");
        assert!(o.status.success(), "pkg-config: {}", text(&o.stderr));
        let flags: Vec<String> = text(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert!(
            flags.contains(&format!("-I{}", include.display())),
            "{flags:?}"
        );
        assert!(
            flags.contains(&format!("-L{}", lib.display()))
                && flags.contains(&"-lferrolm".to_string()),
            "{flags:?}"
        );
        flags
    } else {
        vec![
            format!("-I{}", include.display()),
            format!("-L{}", lib.display()),
            "-lferrolm".into(),
        ]
    }
}

/// Run a program built with the sanitizers against the cdylib; fail on any sanitizer report.
fn run_sanitized(exe: &Path, args: &[&str]) -> Output {
    let o = Command::new(exe)
        .args(args)
        .current_dir(repo())
        .env("LD_LIBRARY_PATH", lib_dir())
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:halt_on_error=1:abort_on_error=0",
        )
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .env("LSAN_OPTIONS", "")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    let err = text(&o.stderr);
    for bad in [
        "AddressSanitizer",
        "LeakSanitizer",
        "runtime error:",
        "detected memory leaks",
    ] {
        assert!(
            !err.contains(bad),
            "{} {args:?}: sanitizer report:\n{err}",
            exe.display()
        );
    }
    assert!(
        o.status.success(),
        "{} {args:?} exited with {:?}:\n{}\n{err}",
        exe.display(),
        o.status,
        text(&o.stdout)
    );
    o
}

/// `ferrolm run`'s generated text for these arguments (its stdout without the one newline
/// `run` ends it with).
fn ferrolm_run(args: &[&str]) -> String {
    let m = model().expect("model");
    let o = Command::new(lib_dir().join("ferrolm"))
        .arg("run")
        .arg("-m")
        .arg(&m)
        .args(args)
        .output()
        .expect("run the ferrolm binary");
    assert!(
        o.status.success(),
        "ferrolm run {args:?}: {}",
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    out.strip_suffix('\n')
        .expect("ferrolm run ends its output with a newline")
        .to_string()
}

/// The line of generate.c's statistics (tokens/s), for the test log.
fn stats_line(stderr: &[u8]) -> String {
    text(stderr)
        .lines()
        .find(|l| l.contains("tokens/s"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn header_compiles_as_strict_c_and_cpp() {
    let header = crate_dir().join("include/ferrolm.h");
    assert!(
        header.exists(),
        "capi/include/ferrolm.h is missing (scripts/gen-header.sh)"
    );
    for (tool, std, lang) in [("gcc", "-std=c99", "c"), ("g++", "-std=c++11", "c++")] {
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed");
            continue;
        }
        let o = Command::new(tool)
            .args([
                std,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
                "-x",
                lang,
            ])
            .arg(&header)
            .output()
            .expect("run the compiler");
        assert!(o.status.success(), "{tool} {std}: {}", text(&o.stderr));
    }
}

#[test]
fn c_generate_matches_ferrolm_run_under_sanitizers() {
    skip_unless!("gcc");
    let dir = out_dir("generate");
    let exe = dir.join("generate");
    let mut extra: Vec<String> = SANITIZE.iter().map(|s| s.to_string()).collect();
    extra.extend(link_flags(&dir));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    compile("gcc", "-std=c11", "examples/c/generate.c", &exe, &extra);
    let m = model().unwrap();
    let m = m.to_str().unwrap();
    let chat =
        "<|im_start|>user\nWrite one sentence about the sea.<|im_end|>\n<|im_start|>assistant\n";
    let cases: [(&str, &str, &str, Option<&str>); 3] = [
        ("The capital of France is", "48", "42", None),
        (chat, "64", "7", None),
        ("Once upon a time", "40", "1", Some("0")),
    ];
    for (prompt, n, seed, temp) in cases {
        let mut args = vec!["-m", m, "-p", prompt, "-n", n, "-s", seed];
        let mut run_args = vec!["-p", prompt, "-n", n, "--seed", seed];
        if let Some(t) = temp {
            args.extend(["--temp", t]);
            run_args.extend(["--temp", t]);
        }
        let o = run_sanitized(&exe, &args);
        let want = ferrolm_run(&run_args);
        assert!(
            !want.is_empty(),
            "ferrolm run printed nothing for {prompt:?}"
        );
        assert_eq!(
            text(&o.stdout),
            want,
            "generate.c and ferrolm run differ for prompt {prompt:?}, seed {seed}"
        );
        eprintln!(
            "generate.c (ASan+UBSan) {prompt:?} seed {seed}: {}",
            stats_line(&o.stderr)
        );
    }
    // The callback stops generation.
    let o = run_sanitized(&exe, &["-m", m, "-n", "40", "-s", "3", "--stop-after", "5"]);
    assert!(
        text(&o.stderr).contains("stop: callback"),
        "{}",
        text(&o.stderr)
    );
}

/// The C ABI runs every family: the real Gemma 3 270M (when fetched) and the random-weight
/// qwen3, phi3, smollm3 and gemma3 files `ferrolm synth` writes give generate.c the same greedy
/// text as `ferrolm run`.
#[test]
fn c_generate_runs_every_family() {
    skip_unless!("gcc");
    let Some(vocab) = model() else { return };
    let dir = out_dir("families");
    let exe = dir.join("generate");
    let extra = link_flags(&dir);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    compile("gcc", "-std=c11", "examples/c/generate.c", &exe, &extra);
    let mut files: Vec<PathBuf> = ["qwen3", "phi3", "smollm3", "gemma3"]
        .iter()
        .map(|arch| {
            let out = dir.join(format!("test-{arch}.gguf"));
            let o = Command::new(lib_dir().join("ferrolm"))
                .args([
                    "synth",
                    "--shape",
                    &format!("test-{arch}"),
                    "--type",
                    "Q8_0",
                ])
                .arg("--vocab-from")
                .arg(&vocab)
                .arg("--force")
                .arg("-o")
                .arg(&out)
                .output()
                .expect("run ferrolm synth");
            assert!(o.status.success(), "synth {arch}: {}", text(&o.stderr));
            out
        })
        .collect();
    let gemma = repo().join("models/gemma-3-270m-q4_k_m.gguf");
    if gemma.exists() {
        files.push(gemma);
    }
    for f in &files {
        let m = f.to_str().unwrap();
        let args = ["-p", "The capital of France is", "-n", "8", "--temp", "0"];
        let o = Command::new(&exe)
            .args(["-m", m])
            .args(args)
            .env("LD_LIBRARY_PATH", lib_dir())
            .output()
            .expect("run generate");
        assert!(o.status.success(), "generate.c on {m}: {}", text(&o.stderr));
        let run = Command::new(lib_dir().join("ferrolm"))
            .args(["run", "-m", m])
            .args(args)
            .output()
            .expect("run ferrolm");
        assert!(
            run.status.success(),
            "ferrolm run on {m}: {}",
            text(&run.stderr)
        );
        let want = text(&run.stdout);
        let want = want.strip_suffix('\n').unwrap_or(&want);
        assert!(!want.is_empty(), "ferrolm run printed nothing for {m}");
        assert_eq!(
            text(&o.stdout),
            want,
            "generate.c and ferrolm run differ on {m}"
        );
    }
}

#[test]
fn c_errors_every_path_under_sanitizers() {
    skip_unless!("gcc");
    let dir = out_dir("errors");
    let exe = dir.join("errors");
    let mut extra: Vec<String> = SANITIZE.iter().map(|s| s.to_string()).collect();
    extra.push("-pthread".into());
    extra.extend(link_flags(&dir));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    compile("gcc", "-std=c11", "examples/c/errors.c", &exe, &extra);
    let o = run_sanitized(&exe, &[model().unwrap().to_str().unwrap()]);
    let out = text(&o.stdout);
    assert!(!out.contains("FAIL"), "{out}");
    let last = out.lines().last().unwrap_or("");
    assert!(last.ends_with(" passed, 0 failed"), "{out}");
    let n: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(n > 200, "only {n} checks ran");
    eprintln!("errors.c (ASan+UBSan): {n} checks passed");
}

#[test]
fn cpp_generate_under_sanitizers() {
    skip_unless!("g++");
    let dir = out_dir("cpp");
    let exe = dir.join("generate_cpp");
    let mut extra: Vec<String> = SANITIZE.iter().map(|s| s.to_string()).collect();
    extra.extend(link_flags(&dir));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    compile("g++", "-std=c++17", "examples/c/generate.cpp", &exe, &extra);
    let prompt = "The largest planet in the solar system is";
    let o = run_sanitized(&exe, &[model().unwrap().to_str().unwrap(), prompt, "24"]);
    assert_eq!(
        text(&o.stdout),
        ferrolm_run(&["-p", prompt, "-n", "24", "--temp", "0"])
    );
    eprintln!("generate.cpp (ASan+UBSan): {}", stats_line(&o.stderr));
}

#[test]
fn c_generate_links_the_staticlib() {
    skip_unless!("gcc");
    let dir = out_dir("static");
    let exe = dir.join("generate_static");
    let lib = lib_dir().join("libferrolm.a");
    assert!(
        lib.exists(),
        "no {} (capi's [lib] crate-type must include staticlib)",
        lib.display()
    );
    let include = format!("-I{}", crate_dir().join("include").display());
    let lib = lib.to_str().unwrap().to_string();
    // The system libraries the Rust standard library needs (ferrolm.pc's Libs.private).
    let extra = [
        include.as_str(),
        lib.as_str(),
        "-lgcc_s",
        "-lutil",
        "-lrt",
        "-lpthread",
        "-lm",
        "-ldl",
        "-lc",
    ];
    compile("gcc", "-std=c11", "examples/c/generate.c", &exe, &extra);
    let m = model().unwrap();
    let o = Command::new(&exe)
        .args([
            "-m",
            m.to_str().unwrap(),
            "-p",
            "Hello",
            "-n",
            "16",
            "--temp",
            "0",
        ])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run the static program");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        ferrolm_run(&["-p", "Hello", "-n", "16", "--temp", "0"])
    );
}

#[test]
fn python_ctypes_smoke() {
    skip_unless!("python3");
    let lib = lib_dir().join("libferrolm.so");
    let m = model().unwrap();
    let o = Command::new("python3")
        .arg(crate_dir().join("examples/python/ferrolm_smoke.py"))
        .arg("--lib")
        .arg(&lib)
        .arg("--model")
        .arg(&m)
        .args([
            "--prompt",
            "The capital of France is",
            "-n",
            "32",
            "--seed",
            "42",
        ])
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "ctypes smoke test failed:\n{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(
        text(&o.stdout),
        ferrolm_run(&["-p", "The capital of France is", "-n", "32", "--seed", "42"])
    );
    eprintln!("python ctypes: {}", stats_line(&o.stderr));
}
