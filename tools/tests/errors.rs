//! Bad inputs and unsafe outputs: each is one clear error (one line and a non-zero status from the
//! binary) and leaves no file behind.

use ferrolm::output::OutputError;
use ferrolm_quantize::{prepare, quantize_file, FileType, QuantizeError};

mod common;
use common::{bin, fails_with, listing, quantize, tiny};

#[test]
fn missing_config_json() {
    let d = common::scratch("err-no-config");
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    std::fs::remove_file(ck.join("config.json")).unwrap();
    let e = prepare(&ck, FileType::F16).expect_err("must fail");
    assert!(matches!(e, QuantizeError::MissingConfig { .. }), "{e}");
    let out = d.join("out.gguf");
    fails_with(&quantize(&ck, &out, "F16"), "config.json");
    assert!(!out.exists());
    assert_eq!(listing(&d), ["ck"]);
}

#[test]
fn unknown_architecture() {
    let d = common::scratch("err-arch");
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "GPTNeoXForCausalLM", tiny::TINY, false, true);
    let e = prepare(&ck, FileType::F16).expect_err("must fail");
    assert!(
        matches!(&e, QuantizeError::UnsupportedArchitecture { found } if found == "GPTNeoXForCausalLM"),
        "{e}"
    );
    fails_with(
        &quantize(&ck, d.join("o.gguf"), "Q8_0"),
        "GPTNeoXForCausalLM",
    );
    assert_eq!(listing(&d), ["ck"]);
}

#[test]
fn truncated_safetensors() {
    let d = common::scratch("err-truncated");
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    let st = ck.join("model.safetensors");
    let len = std::fs::metadata(&st).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&st).unwrap();
    f.set_len(len - 1000).unwrap();
    drop(f);
    let e = prepare(&ck, FileType::Q4_0).expect_err("must fail");
    assert!(matches!(e, QuantizeError::BadSafetensors { .. }), "{e}");
    fails_with(
        &quantize(&ck, d.join("o.gguf"), "Q4_0"),
        "model.safetensors",
    );
    // A header cut in the middle too.
    std::fs::write(&st, b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let e = prepare(&ck, FileType::Q4_0).expect_err("must fail");
    assert!(matches!(e, QuantizeError::BadSafetensors { .. }), "{e}");
    assert_eq!(listing(&d), ["ck"]);
}

#[test]
fn tensor_shape_disagrees_with_config() {
    let d = common::scratch("err-shape");
    let ck = d.join("ck");
    tiny::checkpoint(&ck, "LlamaForCausalLM", tiny::TINY, false, true);
    let mut cfg = tiny::config("LlamaForCausalLM", tiny::TINY, true);
    cfg["intermediate_size"] = 256.into();
    std::fs::write(ck.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let e = prepare(&ck, FileType::F16).expect_err("must fail");
    match &e {
        QuantizeError::ShapeMismatch {
            tensor,
            found,
            expected,
            ..
        } => {
            assert_eq!(tensor, "model.layers.0.mlp.down_proj.weight");
            assert_eq!(found, &[64, 128]);
            assert_eq!(expected, &[64, 256]);
        }
        other => panic!("{other}"),
    }
    fails_with(&quantize(&ck, d.join("o.gguf"), "F16"), "down_proj");
}

#[test]
fn unknown_output_type() {
    let e = FileType::parse("Q3_K_S").expect_err("must fail");
    assert!(matches!(
        e,
        ferrolm_quantize::ftype::FtypeError::UnknownType(_)
    ));
    let d = common::scratch("err-type");
    let g = d.join("in.gguf");
    tiny::gguf(&g);
    fails_with(&quantize(&g, d.join("o.gguf"), "Q3_K_S"), "Q3_K_S");
    assert_eq!(listing(&d), ["in.gguf"]);
}

#[test]
fn unwritable_destination() {
    let d = common::scratch("err-unwritable");
    let g = d.join("in.gguf");
    tiny::gguf(&g);
    // The parent of the output is a file; then a directory that does not exist.
    for out in [g.join("out.gguf"), d.join("no/such/dir/out.gguf")] {
        let e = quantize_file(&g, &out, FileType::Q8_0, false).expect_err("must fail");
        assert!(
            matches!(e, QuantizeError::Output(OutputError::Unwritable { .. })),
            "{e}"
        );
        fails_with(&quantize(&g, &out, "Q8_0"), "cannot write the output");
    }
    // The output is a directory.
    let e = quantize_file(&g, &d, FileType::Q8_0, true).expect_err("must fail");
    assert!(
        matches!(e, QuantizeError::Output(OutputError::Unwritable { .. })),
        "{e}"
    );
    assert_eq!(listing(&d), ["in.gguf"]);
}

#[test]
fn existing_output_needs_force_and_input_is_never_overwritten() {
    let d = common::scratch("err-exists");
    let g = d.join("in.gguf");
    tiny::gguf(&g);
    let out = d.join("out.gguf");
    std::fs::write(&out, b"keep me").unwrap();
    let e = quantize_file(&g, &out, FileType::Q8_0, false).expect_err("must fail");
    assert!(
        matches!(e, QuantizeError::Output(OutputError::OutputExists(_))),
        "{e}"
    );
    fails_with(&quantize(&g, &out, "Q8_0"), "--force");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let e = quantize_file(&g, &g, FileType::Q8_0, true).expect_err("must fail");
    assert!(
        matches!(e, QuantizeError::Output(OutputError::OutputIsInput(_))),
        "{e}"
    );
    // With --force it is replaced by a complete file.
    let st = bin()
        .arg(&g)
        .arg(&out)
        .arg("Q8_0")
        .arg("--force")
        .status()
        .unwrap();
    assert!(st.success());
    let file = ferrolm::gguf::Gguf::open(&out).unwrap();
    assert_eq!(file.get_u32("general.file_type").unwrap(), 7);
    assert_eq!(listing(&d), ["in.gguf", "out.gguf"]);
}

#[test]
fn not_an_input() {
    let d = common::scratch("err-input");
    let f = d.join("x.bin");
    std::fs::write(&f, b"hello world").unwrap();
    fails_with(
        &quantize(&f, d.join("o.gguf"), "F16"),
        "neither a GGUF file",
    );
    fails_with(
        &quantize(d.join("missing"), d.join("o.gguf"), "F16"),
        "missing",
    );
    let ck = d.join("empty-ck");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::write(
        ck.join("config.json"),
        serde_json::to_vec(&tiny::config("LlamaForCausalLM", tiny::TINY, true)).unwrap(),
    )
    .unwrap();
    fails_with(
        &quantize(&ck, d.join("o.gguf"), "F16"),
        "no model.safetensors",
    );
    assert_eq!(listing(&d), ["empty-ck", "x.bin"]);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let d = common::scratch("dry-run");
    let g = d.join("in.gguf");
    tiny::gguf(&g);
    let out = bin()
        .arg(&g)
        .arg(d.join("o.gguf"))
        .arg("Q4_K_M")
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // 64 is not a multiple of 256: the tied embedding goes straight to Q8_0, attn_v falls back.
    assert!(
        text.contains("token_embd.weight") && text.contains("Q8_0"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("blk.0.attn_v.weight") && l.contains("fallback")),
        "{text}"
    );
    assert!(
        text.contains("output_norm.weight") && text.contains("F32"),
        "{text}"
    );
    assert_eq!(listing(&d), ["in.gguf"]);
}

#[test]
fn interrupt_leaves_no_partial_file() {
    if !common::heavy_allowed("interrupt_leaves_no_partial_file") {
        return;
    }
    let Some(hf) = common::hf_fixtures() else {
        return;
    };
    let d = common::scratch("interrupt");
    let out = d.join("o.gguf");
    let mut child = bin()
        .arg(hf.join("smollm2-135m"))
        .arg(&out)
        .arg("Q4_K_M")
        .spawn()
        .unwrap();
    // Wait until the temporary file exists (conversion under way), then interrupt.
    let t0 = std::time::Instant::now();
    while listing(&d).is_empty() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid with SIGINT.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let st = child.wait().unwrap();
    if st.success() {
        // Finished before the signal arrived (a very fast machine): the output must be complete.
        assert!(out.exists());
        return;
    }
    assert_eq!(st.code(), Some(130), "{st}");
    assert_eq!(
        listing(&d),
        Vec::<String>::new(),
        "partial output left behind"
    );
}

/// Corrupted headers and configs give errors, never panics.
#[test]
fn corrupted_inputs_never_panic() {
    let d = common::scratch("err-corrupt");
    let ck = d.join("ck");
    let dims = tiny::Dims {
        vocab: 64,
        ..tiny::TINY
    };
    tiny::checkpoint(&ck, "LlamaForCausalLM", dims, false, true);
    let st = ck.join("model.safetensors");
    let orig = std::fs::read(&st).unwrap();
    let header_len = u64::from_le_bytes(orig[..8].try_into().unwrap()) as usize + 8;
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut b = orig.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % header_len;
            b[at] = if round % 2 == 0 {
                b'0' + (next() % 10) as u8
            } else {
                next() as u8
            };
        }
        std::fs::write(&st, &b).unwrap();
        let r = std::panic::catch_unwind(|| prepare(&ck, FileType::Q4_K_M).map(|_| ()));
        assert!(r.is_ok(), "round {round}: prepare panicked");
    }
    std::fs::write(&st, &orig).unwrap();
    let cfg = tiny::config("LlamaForCausalLM", dims, true);
    for (k, v) in [
        ("num_attention_heads", serde_json::json!(0)),
        ("num_attention_heads", serde_json::json!(3)),
        ("num_key_value_heads", serde_json::json!(3)),
        ("hidden_size", serde_json::json!(u64::MAX)),
        ("num_hidden_layers", serde_json::json!(-1)),
        ("vocab_size", serde_json::json!("many")),
        ("head_dim", serde_json::json!(u64::MAX / 2)),
        ("architectures", serde_json::json!([])),
    ] {
        let mut c = cfg.clone();
        c[k] = v.clone();
        std::fs::write(ck.join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
        let r = std::panic::catch_unwind(|| prepare(&ck, FileType::Q8_0).map(|_| ()));
        match r {
            Ok(res) => assert!(res.is_err(), "{k} = {v} was accepted"),
            Err(_) => panic!("{k} = {v}: prepare panicked"),
        }
    }
}

#[test]
fn thread_count_does_not_change_the_output() {
    use ferrolm::gguf::{GgufWriter, OwnedValue};
    use ferrolm::kernels::GgmlType;
    let d = common::scratch("threads");
    let g = d.join("in.gguf");
    // 256-wide rows, so Q4_K_M takes real k-quants (Q4_K, Q6_K) here.
    let mut w = GgufWriter::new();
    // Not a whole model: an architecture ferrolm does not run, so that quantize's check of its
    // output (would ferrolm load it?) is the GGUF reader's alone.
    w.set("general.architecture", OwnedValue::Str("tinytest".into()));
    w.set("tinytest.block_count", OwnedValue::U32(1));
    let specs = [
        ("token_embd.weight", vec![256u64, 300]),
        ("output.weight", vec![256, 300]),
        ("blk.0.attn_v.weight", vec![256, 256]),
        ("blk.0.ffn_down.weight", vec![512, 256]),
        ("blk.0.ffn_up.weight", vec![256, 512]),
    ];
    tiny::write_f32_tensors(&g, w, &specs, 7);
    let mut outs = Vec::new();
    for t in ["1", "3"] {
        let out = d.join(format!("o{t}.gguf"));
        let st = bin()
            .arg(&g)
            .arg(&out)
            .arg("Q4_K_M")
            .arg(t)
            .status()
            .unwrap();
        assert!(st.success());
        outs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
    let f = ferrolm::gguf::Gguf::open(d.join("o1.gguf")).unwrap();
    let ty = |n: &str| f.tensor(n).unwrap().ty;
    assert_eq!(ty("output.weight"), GgmlType::Q6_K);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.0.ffn_up.weight"), GgmlType::Q4_K);
    assert_eq!(
        ty("blk.0.attn_v.weight"),
        GgmlType::Q6_K,
        "layer 0 of 1 gets more bits"
    );
}
