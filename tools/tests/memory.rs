//! Bounded memory: converting the SmolLM2 checkpoint (269 MB of BF16) to Q4_K_M must peak well
//! below the checkpoint's size, because tensors are streamed in row slices and their input pages
//! released. Measured as the child's peak RSS (getrusage RUSAGE_CHILDREN, this test binary spawns
//! nothing else).

use std::process::Command;

mod common;

#[test]
fn converting_smollm2_to_q4_k_m_stays_small() {
    if !common::heavy_allowed("converting_smollm2_to_q4_k_m_stays_small") {
        return;
    }
    let Some(hf) = common::hf_fixtures() else {
        return;
    };
    let ck = hf.join("smollm2-135m");
    let size = std::fs::metadata(ck.join("model.safetensors"))
        .unwrap()
        .len();
    let d = common::scratch("memory");
    let out = d.join("o.gguf");
    let t0 = std::time::Instant::now();
    let st = Command::new(env!("CARGO_BIN_EXE_quantize"))
        .arg(&ck)
        .arg(&out)
        .arg("Q4_K_M")
        .status()
        .unwrap();
    assert!(st.success());
    let secs = t0.elapsed().as_secs_f64();
    // SAFETY: getrusage writes the struct it is given.
    let peak_kb = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru), 0);
        ru.ru_maxrss as u64
    };
    let peak = peak_kb * 1024;
    eprintln!(
        "smollm2-135m -> Q4_K_M: peak RSS {:.1} MiB for a {:.1} MiB checkpoint, {secs:.1} s",
        peak as f64 / 1048576.0,
        size as f64 / 1048576.0
    );
    let _ = std::fs::remove_dir_all(&d);
    assert!(
        peak < size / 3,
        "peak RSS {peak} bytes is not well below the checkpoint's {size} bytes"
    );
}
