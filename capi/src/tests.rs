//! Unit tests of the guards and the entry points (the C-side tests are in `capi/tests/capi.rs`).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::mem::size_of;

use crate::args::*;
use crate::error::*;
use crate::*;

fn last_error() -> String {
    // SAFETY: ferrolm_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(ferrolm_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_panic_becomes_a_status_with_its_message() {
    let st = guard(|| panic!("boom {}", 42));
    assert_eq!(st, FERROLM_PANIC);
    assert!(last_error().contains("boom 42"), "{}", last_error());
    assert_eq!(guard_value(7u32, || panic!("again")), 7);
    assert!(last_error().contains("again"));
}

#[test]
fn errors_are_per_thread() {
    let st = guard(|| err(FERROLM_IO, "on the main thread"));
    assert_eq!(st, FERROLM_IO);
    let other = std::thread::spawn(|| {
        let before = last_error();
        let _ = guard(|| err(FERROLM_FORMAT, "on another thread"));
        (before, last_error())
    })
    .join()
    .unwrap();
    assert_eq!(other, (String::new(), "on another thread".to_string()));
    assert_eq!(last_error(), "on the main thread");
    // Success does not clear it.
    assert_eq!(guard(|| Ok(())), FERROLM_OK);
    assert_eq!(last_error(), "on the main thread");
}

#[test]
fn status_strings_cover_every_status() {
    for s in 0..=FERROLM_PANIC as c_int {
        // SAFETY: static NUL-terminated strings.
        let text = unsafe { CStr::from_ptr(ferrolm_status_string(s)) }
            .to_str()
            .unwrap();
        assert_ne!(text, "unknown status", "status {s}");
    }
}

#[test]
fn params_read_by_struct_size() {
    // NULL: the defaults.
    let p = read_params(std::ptr::null(), ferrolm_context_default_params())
        .ok()
        .unwrap();
    assert_eq!((p.n_ctx, p.n_batch, p.kv_type), (0, 512, 1));
    // A caller built against a newer, larger struct: our fields are read, the rest ignored.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Newer {
        p: ferrolm_sampler_params,
        extra: u64,
    }
    let mut n = Newer {
        p: ferrolm_sampler_default_params(),
        extra: 99,
    };
    n.p.struct_size = size_of::<Newer>();
    n.p.temp = 0.25;
    let p = read_params(
        &n.p as *const ferrolm_sampler_params,
        ferrolm_sampler_default_params(),
    )
    .ok()
    .unwrap();
    assert_eq!(p.temp, 0.25);
    // Too small: refused with a message naming the struct.
    let mut small = ferrolm_sampler_default_params();
    small.struct_size = 8;
    let e = read_params(&small as *const _, ferrolm_sampler_default_params())
        .err()
        .unwrap();
    assert_eq!(e.status, FERROLM_INVALID_ARGUMENT);
    assert!(e.msg.contains("ferrolm_sampler_params"), "{}", e.msg);
}

#[test]
fn output_structs_written_up_to_struct_size() {
    #[repr(C)]
    struct Newer {
        s: ferrolm_generate_stats,
        extra: u64,
    }
    let mut out = Newer {
        s: ferrolm_generate_stats {
            struct_size: size_of::<Newer>(),
            n_prompt: 0,
            n_gen: 0,
            prompt_ms: 0.0,
            gen_ms: 0.0,
            stop_reason: ferrolm_stop_reason::FERROLM_STOP_EOG,
            reserved: 0,
        },
        extra: 123,
    };
    let v = ferrolm_generate_stats {
        n_gen: 5,
        stop_reason: ferrolm_stop_reason::FERROLM_STOP_STRING,
        ..out.s
    };
    write_sized(&mut out.s as *mut _, v).ok().unwrap();
    assert_eq!(out.s.struct_size, size_of::<ferrolm_generate_stats>());
    assert_eq!(out.s.n_gen, 5);
    assert_eq!(out.s.stop_reason, ferrolm_stop_reason::FERROLM_STOP_STRING);
    assert_eq!(out.extra, 123, "bytes past our struct are left alone");
    out.s.struct_size = 0;
    assert_eq!(
        write_sized(&mut out.s as *mut _, v).err().unwrap().status,
        FERROLM_INVALID_ARGUMENT
    );
}

#[test]
fn text_buffers_report_the_length_needed() {
    let mut buf = [0x55 as c_char; 8];
    let mut len = 0usize;
    let e = write_text(b"hello", buf.as_mut_ptr(), 5, &mut len)
        .err()
        .unwrap();
    assert_eq!((e.status, len), (FERROLM_BUFFER_TOO_SMALL, 5));
    assert_eq!(buf[0], 0x55, "nothing written on failure");
    write_text(b"hello", buf.as_mut_ptr(), 6, &mut len)
        .ok()
        .unwrap();
    // SAFETY: NUL-terminated by write_text.
    assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes(), b"hello");
    assert_eq!(
        write_text(b"", std::ptr::null_mut(), 0, &mut len)
            .err()
            .unwrap()
            .status,
        FERROLM_BUFFER_TOO_SMALL
    );
    assert_eq!(
        write_text(b"x", std::ptr::null_mut(), 9, &mut len)
            .err()
            .unwrap()
            .status,
        FERROLM_NULL_POINTER
    );
}

#[test]
fn null_handles_are_errors_not_crashes() {
    // SAFETY: every pointer is NULL or points to a local; the functions check for NULL.
    unsafe {
        ferrolm_model_free(std::ptr::null_mut());
        ferrolm_context_free(std::ptr::null_mut());
        let mut n = 0usize;
        assert_eq!(
            ferrolm_eval(std::ptr::null_mut(), std::ptr::null(), 0),
            FERROLM_NULL_POINTER
        );
        assert_eq!(
            ferrolm_tokenize(
                std::ptr::null(),
                c"x".as_ptr(),
                1,
                true,
                true,
                std::ptr::null_mut(),
                0,
                &mut n
            ),
            FERROLM_NULL_POINTER
        );
        let mut m: *mut ferrolm_model = std::ptr::NonNull::dangling().as_ptr();
        assert_eq!(
            ferrolm_model_load(std::ptr::null(), std::ptr::null(), &mut m),
            FERROLM_NULL_POINTER
        );
        assert!(m.is_null(), "the out-parameter is set to NULL on failure");
        assert_eq!(
            ferrolm_model_load(
                c"/nonexistent/ferrolm.gguf".as_ptr(),
                std::ptr::null(),
                &mut m
            ),
            FERROLM_IO
        );
        assert!(last_error().contains("/nonexistent/ferrolm.gguf"));
    }
}

/// The fetched SmolLM2 file as a C string, or `None` (with a skip message) when it is missing.
fn smollm2() -> Option<CString> {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        eprintln!("skipped: {} is missing", path.display());
        return None;
    }
    Some(CString::new(path.to_str().unwrap()).unwrap())
}

#[test]
fn a_context_that_panicked_refuses_further_calls() {
    let Some(path) = smollm2() else {
        return;
    };
    let mut cp = ferrolm_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 1;
    // SAFETY: valid arguments; every handle is freed once at the end.
    unsafe {
        let mut model = std::ptr::null_mut();
        assert_eq!(
            ferrolm_model_load(path.as_ptr(), std::ptr::null(), &mut model),
            FERROLM_OK
        );
        let mut ctx = std::ptr::null_mut();
        assert_eq!(ferrolm_context_new(model, &cp, &mut ctx), FERROLM_OK);
        assert_eq!(ferrolm_eval(ctx, [1].as_ptr(), 1), FERROLM_OK);
        assert_eq!(guard_ctx(ctx, |_| panic!("a bug")), FERROLM_PANIC);
        let msg = CStr::from_ptr(ferrolm_context_error(ctx))
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("a bug"), "{msg}");
        assert_eq!(ferrolm_eval(ctx, [1].as_ptr(), 1), FERROLM_PANIC);
        assert_eq!(ferrolm_context_reset(ctx), FERROLM_PANIC);
        let msg = CStr::from_ptr(ferrolm_context_error(ctx))
            .to_string_lossy()
            .into_owned();
        assert!(msg.contains("unusable"), "{msg}");
        ferrolm_context_free(ctx);
        ferrolm_model_free(model);
    }
}

unsafe extern "C" fn collect(
    ud: *mut c_void,
    _t: ferrolm_token,
    text: *const c_char,
    n: usize,
) -> bool {
    // SAFETY: `ud` is the String passed below; `text` holds `n` bytes for the call.
    unsafe {
        let out = &mut *(ud as *mut String);
        let b = std::slice::from_raw_parts(text as *const u8, n);
        out.push_str(std::str::from_utf8(b).unwrap());
    }
    true
}

/// Issue 15, item 12: generate 4 tokens, then continue with an empty prompt for 4 more: the
/// same text as one 8-token call (before, the last token of the first call was never
/// evaluated and the continuation sampled it again).
#[test]
fn continuing_with_an_empty_prompt_equals_one_call() {
    let Some(path) = smollm2() else {
        return;
    };
    let prompt = CString::new("The three primary colors are").unwrap();
    let empty = CString::new("").unwrap();
    let mut cp = ferrolm_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    let mut sp = ferrolm_sampler_default_params();
    sp.temp = 0.0;
    // SAFETY: valid arguments; every handle is freed once at the end; the callback's
    // user_data is a live String.
    unsafe {
        let mut model = std::ptr::null_mut();
        assert_eq!(
            ferrolm_model_load(path.as_ptr(), std::ptr::null(), &mut model),
            FERROLM_OK
        );
        let run = |parts: &[(&CStr, i32)]| {
            let mut ctx = std::ptr::null_mut();
            assert_eq!(ferrolm_context_new(model, &cp, &mut ctx), FERROLM_OK);
            assert_eq!(ferrolm_sampler_set(ctx, &sp), FERROLM_OK);
            let mut text = String::new();
            for &(p, n) in parts {
                let mut gp = ferrolm_generate_default_params();
                gp.n_predict = n;
                let st = ferrolm_generate(
                    ctx,
                    p.as_ptr(),
                    &gp,
                    Some(collect),
                    &mut text as *mut String as *mut c_void,
                    std::ptr::null_mut(),
                );
                assert_eq!(st, FERROLM_OK);
            }
            let n_past = (*ctx).ctx.n_past();
            ferrolm_context_free(ctx);
            (text, n_past)
        };
        let (one, n_one) = run(&[(&prompt, 8)]);
        let (two, n_two) = run(&[(&prompt, 4), (&empty, 4)]);
        let (three, _) = run(&[(&prompt, 3), (&empty, 2), (&empty, 3)]);
        assert_eq!(two, one);
        assert_eq!(three, one);
        // Both contexts hold the prompt and all generated tokens but the last.
        assert_eq!(n_two, n_one);
        ferrolm_model_free(model);
    }
}

/// `ferrolm_state_save` after a prompt and 4 generated tokens, `ferrolm_state_load` in a new
/// context: generating 4 more gives the text the first context gives (one 8-token call); a
/// damaged file is FERROLM_FORMAT and leaves the context empty.
#[test]
fn a_saved_state_continues_exactly() {
    let Some(path) = smollm2() else {
        return;
    };
    let prompt = CString::new("The three primary colors are").unwrap();
    let empty = CString::new("").unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolm-capi-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = CString::new(dir.join("s.state").to_str().unwrap()).unwrap();
    let mut cp = ferrolm_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    let mut sp = ferrolm_sampler_default_params();
    sp.temp = 0.0;
    // SAFETY: valid arguments; every handle is freed once at the end; the callback's
    // user_data is a live String.
    unsafe {
        let mut model = std::ptr::null_mut();
        assert_eq!(
            ferrolm_model_load(path.as_ptr(), std::ptr::null(), &mut model),
            FERROLM_OK
        );
        let new_ctx = || {
            let mut ctx = std::ptr::null_mut();
            assert_eq!(ferrolm_context_new(model, &cp, &mut ctx), FERROLM_OK);
            assert_eq!(ferrolm_sampler_set(ctx, &sp), FERROLM_OK);
            ctx
        };
        let gen = |ctx, p: &CStr, n: i32| {
            let mut gp = ferrolm_generate_default_params();
            gp.n_predict = n;
            let mut text = String::new();
            let st = ferrolm_generate(
                ctx,
                p.as_ptr(),
                &gp,
                Some(collect),
                &mut text as *mut String as *mut c_void,
                std::ptr::null_mut(),
            );
            assert_eq!(st, FERROLM_OK, "{}", last_error());
            text
        };
        let a = new_ctx();
        let whole = gen(a, &prompt, 8);
        ferrolm_context_free(a);

        let a = new_ctx();
        let first = gen(a, &prompt, 4);
        assert_eq!(
            ferrolm_state_save(a, file.as_ptr()),
            FERROLM_OK,
            "{}",
            last_error()
        );
        let n_saved = (*a).ctx.n_past();
        ferrolm_context_free(a);

        let b = new_ctx();
        assert_eq!(
            ferrolm_state_load(b, file.as_ptr()),
            FERROLM_OK,
            "{}",
            last_error()
        );
        assert_eq!(ferrolm_context_n_past(b), n_saved);
        let rest = gen(b, &empty, 4);
        assert_eq!(
            first + &rest,
            whole,
            "restored context continues differently"
        );

        let mut bytes = std::fs::read(dir.join("s.state")).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(dir.join("s.state"), &bytes).unwrap();
        assert_eq!(ferrolm_state_load(b, file.as_ptr()), FERROLM_FORMAT);
        assert!(last_error().contains("checksum"), "{}", last_error());
        assert_eq!(ferrolm_context_n_past(b), 0);
        let missing = CString::new("/nonexistent/dir/s.state").unwrap();
        assert_eq!(ferrolm_state_save(b, missing.as_ptr()), FERROLM_IO);
        assert_eq!(
            ferrolm_state_load(b, std::ptr::null()),
            FERROLM_NULL_POINTER
        );
        ferrolm_context_free(b);
        ferrolm_model_free(model);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ferrolm_context_set_flash_attn`: on a fresh context it switches to llama.cpp's flash
/// arithmetic (the logits change in the last bits, the greedy text is SmolLM2's usual one);
/// after an eval it is refused.
#[test]
fn flash_attention_is_switched_before_the_first_eval() {
    let Some(path) = smollm2() else {
        return;
    };
    let mut cp = ferrolm_context_default_params();
    cp.n_ctx = 32;
    cp.n_threads = 1;
    let toks = [1, 504, 3575, 282, 4649];
    // SAFETY: valid arguments; every handle is freed once at the end.
    unsafe {
        let mut model = std::ptr::null_mut();
        assert_eq!(
            ferrolm_model_load(path.as_ptr(), std::ptr::null(), &mut model),
            FERROLM_OK
        );
        let logits = |flash: bool| {
            let mut ctx = std::ptr::null_mut();
            assert_eq!(ferrolm_context_new(model, &cp, &mut ctx), FERROLM_OK);
            assert_eq!(ferrolm_context_set_flash_attn(ctx, flash), FERROLM_OK);
            assert!((*ctx).ctx.flash_attn() == flash);
            assert_eq!(ferrolm_eval(ctx, toks.as_ptr(), toks.len()), FERROLM_OK);
            let (mut p, mut n) = (std::ptr::null(), 0usize);
            assert_eq!(ferrolm_get_logits(ctx, &mut p, &mut n), FERROLM_OK);
            let l = std::slice::from_raw_parts(p, n).to_vec();
            assert_eq!(
                ferrolm_context_set_flash_attn(ctx, !flash),
                FERROLM_INVALID_ARGUMENT
            );
            assert!(
                last_error().contains("before anything is evaluated"),
                "{}",
                last_error()
            );
            assert_eq!(ferrolm_context_reset(ctx), FERROLM_OK);
            assert_eq!(ferrolm_context_set_flash_attn(ctx, !flash), FERROLM_OK);
            ferrolm_context_free(ctx);
            l
        };
        let (off, on) = (logits(false), logits(true));
        assert_ne!(off, on, "flash arithmetic rounds the values in f16");
        let argmax = |l: &[f32]| (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
        assert_eq!(argmax(&off), argmax(&on));
        let max_diff = off
            .iter()
            .zip(&on)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_diff < 1.0, "{max_diff}");
        ferrolm_model_free(model);
    }
}

/// `ferrolm_sampler_set_grammar`: generation follows the grammar (at temperature 1.5) and ends
/// where it can; a bad grammar is FERROLM_INVALID_ARGUMENT naming the line and column and keeps
/// the previous one; NULL removes it.
#[test]
fn generation_follows_a_grammar() {
    let Some(path) = smollm2() else {
        return;
    };
    let prompt = CString::new("Is the sky blue? Answer:").unwrap();
    let grammar = CString::new(r#"root ::= " " ("yes" | "no") "!""#).unwrap();
    let bad = CString::new("root ::= (\"a\"").unwrap();
    let mut cp = ferrolm_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    let mut sp = ferrolm_sampler_default_params();
    sp.temp = 1.5;
    sp.seed = 3;
    // SAFETY: valid arguments; every handle is freed once at the end; the callback's
    // user_data is a live String.
    unsafe {
        let mut model = std::ptr::null_mut();
        assert_eq!(
            ferrolm_model_load(path.as_ptr(), std::ptr::null(), &mut model),
            FERROLM_OK
        );
        let mut ctx = std::ptr::null_mut();
        assert_eq!(ferrolm_context_new(model, &cp, &mut ctx), FERROLM_OK);
        assert_eq!(ferrolm_sampler_set(ctx, &sp), FERROLM_OK);
        assert_eq!(
            ferrolm_sampler_set_grammar(ctx, grammar.as_ptr(), std::ptr::null()),
            FERROLM_OK
        );
        assert_eq!(
            ferrolm_sampler_set_grammar(ctx, bad.as_ptr(), std::ptr::null()),
            FERROLM_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("opened at line 1, column 10"),
            "{}",
            last_error()
        );
        let mut gp = ferrolm_generate_default_params();
        gp.n_predict = 16;
        let mut text = String::new();
        let st = ferrolm_generate(
            ctx,
            prompt.as_ptr(),
            &gp,
            Some(collect),
            &mut text as *mut String as *mut c_void,
            std::ptr::null_mut(),
        );
        assert_eq!(st, FERROLM_OK);
        assert!(text == " yes!" || text == " no!", "{text:?}");
        // Without the grammar the same call is free text.
        assert_eq!(
            ferrolm_sampler_set_grammar(ctx, std::ptr::null(), std::ptr::null()),
            FERROLM_OK
        );
        assert!((*ctx).sampler.grammar().is_none());
        ferrolm_context_free(ctx);
        ferrolm_model_free(model);
    }
}
