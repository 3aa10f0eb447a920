//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
