//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

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

/// Path to a file under `tests/data/`.
pub fn data(rel: &str) -> PathBuf {
    root().join("tests/data").join(rel)
}
