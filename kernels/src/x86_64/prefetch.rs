//! The x86-64 software-prefetch plan: how far ahead of the weights the decode kernels prefetch,
//! chosen once per CPU vendor when the kernel table is filled (measurements: docs/perf.md,
//! "x86-64 software prefetch").

use std::arch::x86_64::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes ahead of the current weight block to prefetch, set once by [`set_prefetch_plan`] when the
/// table is filled (4096 until then). The best distance depends on the kernel and the CPU vendor,
/// so it is chosen per vendor (measurements: docs/perf.md, "x86-64 software prefetch").
static PREFETCH_AHEAD: AtomicUsize = AtomicUsize::new(4096);

/// The AVX-512 Q8_0 gemv's own distance: 4 KiB on every vendor (it streams twice the bytes per
/// multiply of the others).
static PREFETCH_AHEAD_Q8_0: AtomicUsize = AtomicUsize::new(4096);

/// Whether the Q4_0/Q4_1/Q5_0/Q6_K AVX-512 gemvs and the F32/F16/BF16 dot products prefetch: yes on
/// Intel (its hardware prefetcher alone falls short there), no elsewhere (tuned on Zen 4).
static GEMV_STREAMS_PREFETCH: AtomicBool = AtomicBool::new(false);

/// Chooses the prefetch distance for this CPU: 2 KiB (the Q8_0 gemv 4 KiB) and prefetching Q4_0,
/// Q4_1, Q5_0 and Q6_K gemvs on Intel, 4 KiB and none in those elsewhere (tuned on Zen 4).
/// `FERROLM_PREFETCH=BYTES` overrides both: that distance for every kernel, those included; `0`
/// turns software prefetch off.
pub(super) fn set_prefetch_plan() {
    let intel = {
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        #[allow(unused_unsafe)]
        let r = unsafe { __cpuid(0) };
        (r.ebx, r.edx, r.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e) // "GenuineIntel"
    };
    let over = std::env::var("FERROLM_PREFETCH")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    let (ahead, streams) = match over {
        Some(n) => (n, n != 0),
        None if intel => (2048, true),
        None => (4096, false),
    };
    PREFETCH_AHEAD.store(ahead, Ordering::Relaxed);
    PREFETCH_AHEAD_Q8_0.store(over.unwrap_or(4096), Ordering::Relaxed);
    GEMV_STREAMS_PREFETCH.store(streams, Ordering::Relaxed);
}

/// Whether the Q4_0, Q4_1, Q5_0 and Q6_K gemvs and the float dot products issue prefetches (read
/// once per row).
#[inline(always)]
pub(super) fn gemv_streams_prefetch() -> bool {
    GEMV_STREAMS_PREFETCH.load(Ordering::Relaxed)
}

/// Prefetches the `LINES` 64-byte lines from `p` on, each `PREFETCH_AHEAD` bytes ahead: a step that
/// consumes more than one line of weights prefetches each of them (one per step leaves the rest to
/// the hardware prefetcher, too slow alone on Intel). The addresses may lie past the row: a
/// prefetch is a hint and never faults, and they are computed with wrapping arithmetic. Distance 0
/// issues none. (The distance is loaded once per call: no slower than a constant.)
#[inline(always)]
pub(super) fn prefetch_lines<const LINES: usize, T>(p: *const T) {
    lines_at::<LINES>(p as *const u8, PREFETCH_AHEAD.load(Ordering::Relaxed));
}

/// [`prefetch_lines`] at the Q8_0 gemv's distance, [`PREFETCH_AHEAD_Q8_0`].
#[inline(always)]
pub(super) fn prefetch_lines_q8_0<const LINES: usize, T>(p: *const T) {
    lines_at::<LINES>(p as *const u8, PREFETCH_AHEAD_Q8_0.load(Ordering::Relaxed));
}

#[inline(always)]
fn lines_at<const LINES: usize>(p: *const u8, d: usize) {
    if d == 0 {
        return;
    }
    for k in 0..LINES {
        // SAFETY: prefetch has no memory-safety requirements on its address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(d + 64 * k) as *const i8) };
    }
}
