//! A saved and restored context state continues exactly as the unsaved context does, and a file
//! that does not fit (damaged, truncated, another model, another cache layout, a directory) is
//! refused with an error that says why, leaving the sequence empty.

use std::sync::Arc;

use ferrolm::model::{Context, ContextParams, Logits, Model};
use ferrolm::state::StateError;
use ferrolm::tokenizer::Tokenizer;

mod common;

/// Greedy steps from the context's current logits: the logits after each.
fn continue_greedy(ctx: &mut Context, steps: usize) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for _ in 0..steps {
        let id = common::argmax(ctx.logits());
        ctx.eval(&[id], Logits::Last).unwrap();
        out.push(ctx.logits().to_vec());
    }
    out
}

/// `name` in a scratch directory of this process and `test` (tests run in parallel: each removes
/// only its own directory).
fn tmp(test: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ferrolm-state-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn check_round_trip(model_file: &str, params: ContextParams) {
    let Some(path) = common::model(model_file) else {
        return;
    };
    let model = Arc::new(Model::load(&path).unwrap());
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let prompt = tok.encode(
        "You are a helpful assistant. Answer briefly and precisely. The capital of France is",
        true,
        true,
    );
    let mut a = Context::new(Arc::clone(&model), params.clone()).unwrap();
    a.eval(&prompt, Logits::Last).unwrap();
    let file = tmp(model_file, "round-trip.state");
    a.state_save(0, Some(a.logits()), &file).unwrap();
    let a_logits = a.logits().to_vec();
    let want = continue_greedy(&mut a, 8);

    let mut b = Context::new(Arc::clone(&model), params).unwrap();
    let loaded = b.state_load(0, &file).unwrap();
    assert_eq!(loaded.tokens, prompt, "{model_file}: the saved token ids");
    assert!(loaded.logits, "{model_file}: the logits were saved");
    assert_eq!(b.n_past(), prompt.len());
    assert_eq!(b.tokens(), &prompt[..]);
    assert!(b.logits() == a_logits, "{model_file}: restored logits");
    let got = continue_greedy(&mut b, 8);
    assert!(
        got == want,
        "{model_file}: restored state continues differently"
    );
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
}

#[test]
fn smollm2_state_round_trip_continues_exactly() {
    check_round_trip(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        ContextParams {
            n_ctx: 256,
            n_threads: 2,
            ..Default::default()
        },
    );
}

#[test]
fn gemma3_state_round_trip_with_flash_and_q8_cache() {
    for (flash, kv) in [
        (true, ferrolm::kv_cache::KvType::F16),
        (false, ferrolm::kv_cache::KvType::Q8_0),
    ] {
        check_round_trip(
            "gemma-3-270m-q4_k_m.gguf",
            ContextParams {
                n_ctx: 256,
                n_threads: 2,
                flash_attn: flash,
                kv_type: kv,
                ..Default::default()
            },
        );
    }
}

#[test]
fn bad_state_files_are_refused() {
    let Some(path) = common::model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let model = Arc::new(Model::load(&path).unwrap());
    let params = ContextParams {
        n_ctx: 64,
        n_threads: 1,
        ..Default::default()
    };
    let mut ctx = Context::new(Arc::clone(&model), params.clone()).unwrap();
    let ids = [1u32, 504, 3575, 282, 4649];
    ctx.eval(&ids, Logits::Last).unwrap();
    let good = tmp("bad", "good.state");
    ctx.state_save(0, None, &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let load = |bytes: &[u8], name: &str, ctx: &mut Context| {
        let f = tmp("bad", name);
        std::fs::write(&f, bytes).unwrap();
        let e = ctx.state_load(0, &f).unwrap_err();
        assert_eq!(ctx.n_past(), 0, "{name}: the sequence is left empty");
        e
    };
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x40;
    let e = load(&damaged, "damaged", &mut ctx);
    assert!(matches!(e, StateError::Checksum { .. }), "{e}");
    let e = load(&bytes[..bytes.len() - 3], "truncated", &mut ctx);
    assert!(matches!(e, StateError::Size { .. }), "{e}");
    assert!(e.to_string().contains("header says"), "{e}");
    let e = load(
        b"GGUF and more bytes than a header.............................",
        "other",
        &mut ctx,
    );
    assert!(matches!(e, StateError::NotState { .. }), "{e}");
    // A hostile token count: refused from the header, nothing allocated for it.
    let mut huge = bytes.clone();
    huge[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = load(&huge, "huge", &mut ctx);
    assert!(matches!(e, StateError::TooLong { .. }), "{e}");
    // Another cache layout (flash attention stores values as rows).
    let mut flash = Context::new(
        Arc::clone(&model),
        ContextParams {
            flash_attn: true,
            ..params.clone()
        },
    )
    .unwrap();
    let e = flash.state_load(0, &good).unwrap_err();
    assert!(matches!(e, StateError::Layout { .. }), "{e}");
    // Another model.
    if let Some(q) = common::model("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf") {
        let qm = Arc::new(Model::load(&q).unwrap());
        let mut qc = Context::new(qm, params.clone()).unwrap();
        let e = qc.state_load(0, &good).unwrap_err();
        assert!(matches!(e, StateError::OtherModel { .. }), "{e}");
    }
    // A directory, and a save into a missing directory (no file, no temporary left).
    let e = ctx.state_load(0, &std::env::temp_dir()).unwrap_err();
    assert!(matches!(e, StateError::NotState { .. }), "{e}");
    ctx.eval(&ids, Logits::Last).unwrap();
    let missing = tmp("bad", "no-such-dir").join("x.state");
    assert!(ctx.state_save(0, None, &missing).is_err());
    assert!(!missing.parent().unwrap().exists());
    // The good file still loads.
    let l = ctx.state_load(0, &good).unwrap();
    assert_eq!((l.tokens, l.logits), (ids.to_vec(), false));
    let _ = std::fs::remove_dir_all(good.parent().unwrap());
}
