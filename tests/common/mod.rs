//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod every_type;

/// Repository root: the workspace's directory (the tests of `cli/` and `capi/` share this file).
pub fn root() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(dir)
        .to_path_buf()
}

/// Path to a model in `models/` (or `$FERROLM_MODELS`), or `None` with a skip message when absent.
pub fn model(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FERROLM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"));
    let p = dir.join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} not found (run scripts/fetch-models.sh)",
            p.display()
        );
        None
    }
}

/// The most likely token: the index of the largest logit, ties to the lower id (greedy decoding,
/// as llama.cpp's greedy sampler picks).
pub fn argmax(l: &[f32]) -> u32 {
    (0..l.len())
        .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
        .expect("logits") as u32
}

/// `BIN synth --shape test-{arch} --type F16 --seed 7 --vocab-from VOCAB --force -o OUT` (`BIN`:
/// the `ferrolm` executable): the random-weight files whose llama.cpp logits `tests/data/arch/`
/// records; panics with the command's stderr when it fails.
pub fn synth_test_arch(
    bin: &std::path::Path,
    arch: &str,
    vocab: &std::path::Path,
    out: &std::path::Path,
) {
    let o = std::process::Command::new(bin)
        .args([
            "synth",
            "--shape",
            &format!("test-{arch}"),
            "--type",
            "F16",
            "--seed",
            "7",
        ])
        .arg("--vocab-from")
        .arg(vocab)
        .args(["--force", "-o"])
        .arg(out)
        .output()
        .expect("run ferrolm synth");
    assert!(
        o.status.success(),
        "ferrolm synth test-{arch}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Path to a file under `tests/data/`.
pub fn data(rel: &str) -> PathBuf {
    root().join("tests/data").join(rel)
}

/// `cargo build --quiet --release -p ferrolm-capi -p ferrolm-cli --target-dir TARGET_DIR` in the
/// workspace, with the cargo that runs the tests (the C libraries and the `ferrolm` binary); panics
/// with cargo's stderr when the build fails. Returns `TARGET_DIR/release`. Every test asks for
/// the same packages, so the features resolve the same way and only the first build compiles.
pub fn release_build(target_dir: &std::path::Path) -> PathBuf {
    let args = ["-p", "ferrolm-capi", "-p", "ferrolm-cli"];
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let o = std::process::Command::new(&cargo)
        .args(["build", "--quiet", "--release"])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(root())
        .output()
        .expect("run cargo build --release");
    assert!(
        o.status.success(),
        "cargo build --release {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    target_dir.join("release")
}

/// Runs `cmd` with `input` on its standard input (then closed); its output.
pub fn output_with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the command");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write the input");
    child.wait_with_output().expect("wait for the command")
}
