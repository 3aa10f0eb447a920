//! Sampler behaviour, and proof that sampling a token allocates nothing (a counting global
//! allocator lives in this test binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ferrolm::sampler::{Sampler, SamplerParams, StopMatcher};

/// Counts allocations made by the current thread while counting is switched on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the thread-locals are const
// initialised `Cell`s, so touching them never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note_alloc() {
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count_allocs(f: impl FnOnce()) -> usize {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(|a| a.get())
}

/// Deterministic pseudo-random logits.
fn logits(n: usize, salt: u64) -> Vec<f32> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        })
        .collect()
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for i in 1..l.len() {
        if l[i] > l[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn sampling_allocates_nothing() {
    let n_vocab = 151_936;
    let l = logits(n_vocab, 7);
    let params = SamplerParams {
        repeat_penalty: 1.1,
        freq_penalty: 0.1,
        presence_penalty: 0.2,
        top_k: 0, // full sort
        seed: 1,
        ..SamplerParams::default()
    };
    for p in [
        params,
        SamplerParams {
            top_k: 40,
            ..params
        },
        SamplerParams::greedy(),
    ] {
        let mut s = Sampler::new(p, n_vocab);
        for i in 0..100 {
            s.accept(i * 13);
        }
        let n = count_allocs(|| {
            for _ in 0..20 {
                let id = s.sample(&l);
                s.accept(id);
            }
            s.reset();
        });
        assert_eq!(n, 0, "{p:?}: sampling allocated {n} times");
    }
    // The counter works.
    assert!(count_allocs(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn greedy_is_argmax_with_ties_to_lower_id() {
    let mut s = Sampler::new(SamplerParams::greedy(), 1000);
    for salt in 0..20 {
        let l = logits(1000, salt);
        assert_eq!(s.sample(&l), argmax(&l));
    }
    let mut l = vec![0.0f32; 10];
    l[3] = 5.0;
    l[7] = 5.0;
    assert_eq!(s.sample(&l), 3);
    // NaN is never chosen over a real logit.
    l[1] = f32::NAN;
    assert_eq!(s.sample(&l), 3);
    assert_eq!(s.sample(&[]), 0);
}

#[test]
fn top_k_1_is_greedy() {
    let p = SamplerParams {
        top_k: 1,
        temp: 1.5,
        top_p: 1.0,
        min_p: 0.0,
        seed: 99,
        ..SamplerParams::default()
    };
    let mut s = Sampler::new(p, 5000);
    for salt in 0..50 {
        let l = logits(5000, salt);
        assert_eq!(s.sample(&l), argmax(&l));
    }
}

/// With penalties, greedy and top-k = 1 both pick the argmax of the penalized logits, computed
/// here by hand.
#[test]
fn penalized_argmax_three_ways() {
    let n = 2000;
    let base = SamplerParams {
        repeat_penalty: 1.7,
        freq_penalty: 0.3,
        presence_penalty: 0.5,
        repeat_last_n: 16,
        seed: 9,
        ..SamplerParams::greedy()
    };
    let mut greedy = Sampler::new(base, n);
    let mut topk1 = Sampler::new(
        SamplerParams {
            temp: 0.9,
            top_k: 1,
            ..base
        },
        n,
    );
    let mut window: Vec<u32> = Vec::new();
    for step in 0..200u64 {
        let l = logits(n, step);
        // Make recent tokens likely so the penalties matter.
        let mut l2 = l.clone();
        for &t in &window {
            l2[t as usize] += 3.0;
        }
        let mut want = l2.clone();
        for (id, w) in want.iter_mut().enumerate() {
            let count = window.iter().filter(|&&t| t as usize == id).count();
            if count > 0 {
                *w = if *w <= 0.0 { *w * 1.7 } else { *w / 1.7 };
                *w -= count as f32 * 0.3 + 0.5;
            }
        }
        let id = argmax(&want);
        assert_eq!(greedy.sample(&l2), id, "step {step}");
        assert_eq!(topk1.sample(&l2), id, "step {step}");
        // Feed a mix of the chosen token and others.
        let next = if step % 3 == 0 {
            id
        } else {
            (step * 37 % n as u64) as u32
        };
        greedy.accept(next);
        topk1.accept(next);
        window.push(next);
        if window.len() > 16 {
            window.remove(0);
        }
    }
}

#[test]
fn seeds_are_reproducible() {
    let run = |seed: u64| -> Vec<u32> {
        let p = SamplerParams {
            seed,
            temp: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerParams::default()
        };
        let mut s = Sampler::new(p, 3000);
        (0..64)
            .map(|i| {
                let id = s.sample(&logits(3000, i));
                s.accept(id);
                id
            })
            .collect()
    };
    assert_eq!(run(1234), run(1234));
    assert_ne!(run(1234), run(4321));
    // reset() restarts the stream.
    let p = SamplerParams {
        seed: 5,
        temp: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::default()
    };
    let mut s = Sampler::new(p, 3000);
    let l = logits(3000, 1);
    let a: Vec<u32> = (0..10).map(|_| s.sample(&l)).collect();
    s.reset();
    let b: Vec<u32> = (0..10).map(|_| s.sample(&l)).collect();
    assert_eq!(a, b);
    assert_eq!(s.seed(), 5);
    // The clock seed is reported.
    let t = Sampler::new(SamplerParams::default(), 10);
    assert_ne!(t.seed(), ferrolm::sampler::SEED_FROM_TIME);
}

#[test]
fn sample_frequencies_follow_softmax() {
    let l = [1.0f32, 0.0, -1.0, 2.0];
    let p = SamplerParams {
        seed: 3,
        temp: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::default()
    };
    let mut s = Sampler::new(p, 4);
    let mut counts = [0usize; 4];
    let n = 200_000;
    for _ in 0..n {
        counts[s.sample(&l) as usize] += 1;
    }
    let z: f32 = l.iter().map(|x| x.exp()).sum();
    for i in 0..4 {
        let want = l[i].exp() / z;
        let got = counts[i] as f32 / n as f32;
        assert!((want - got).abs() < 0.005, "token {i}: {got} vs {want}");
    }
    // Temperature 0.5 sharpens: p ∝ exp(2 * logit).
    let mut s = Sampler::new(SamplerParams { temp: 0.5, ..p }, 4);
    let mut top = 0;
    for _ in 0..n {
        top += (s.sample(&l) == 3) as usize;
    }
    let z2: f32 = l.iter().map(|x| (2.0 * x).exp()).sum();
    let want = (4.0f32).exp() / z2;
    assert!((top as f32 / n as f32 - want).abs() < 0.005);
}

#[test]
fn top_p_and_min_p_cut_the_tail() {
    // probabilities ~ [0.64, 0.24, 0.09, 0.03]
    let l = [3.0f32, 2.0, 1.0, 0.0];
    let base = SamplerParams {
        seed: 11,
        temp: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        ..SamplerParams::default()
    };
    let seen = |p: SamplerParams| {
        let mut s = Sampler::new(p, 4);
        let mut seen = [false; 4];
        for _ in 0..20_000 {
            seen[s.sample(&l) as usize] = true;
        }
        seen
    };
    assert_eq!(seen(base), [true; 4]);
    assert_eq!(
        seen(SamplerParams { top_p: 0.5, ..base }),
        [true, false, false, false]
    );
    assert_eq!(
        seen(SamplerParams { top_p: 0.8, ..base }),
        [true, true, false, false]
    );
    // min_p 0.2: keep p >= 0.2 * p_max, i.e. logit >= 3 + ln 0.2 = 1.39
    assert_eq!(
        seen(SamplerParams { min_p: 0.2, ..base }),
        [true, true, false, false]
    );
    assert_eq!(
        seen(SamplerParams { top_k: 3, ..base }),
        [true, true, true, false]
    );

    // top-k above the one-pass selection limit (256) cuts too.
    let n = 1000;
    let flat: Vec<f32> = (0..n).map(|i| -(i as f32) * 1e-3).collect(); // token i is rank i
    for k in [10, 300, 999] {
        let p = SamplerParams {
            top_k: k,
            temp: 100.0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 4,
            ..SamplerParams::default()
        };
        let mut s = Sampler::new(p, n);
        let max_id = (0..5000).map(|_| s.sample(&flat)).max().unwrap();
        assert!(max_id < k as u32, "top_k {k}: sampled rank {max_id}");
        assert!(
            max_id >= k as u32 * 9 / 10,
            "top_k {k}: the tail of the kept set is reachable"
        );
    }
}

#[test]
fn penalties_change_the_right_logits() {
    let greedy = SamplerParams {
        repeat_last_n: 4,
        ..SamplerParams::greedy()
    };
    // repeat penalty divides positive logits...
    let mut s = Sampler::new(
        SamplerParams {
            repeat_penalty: 2.0,
            ..greedy
        },
        4,
    );
    let l = [2.0f32, 1.5, 0.0, -3.0];
    assert_eq!(s.sample(&l), 0);
    s.accept(0);
    assert_eq!(s.sample(&l), 1, "2.0 / 2 = 1.0 < 1.5");
    // ...and multiplies negative ones.
    let l2 = [-1.0f32, -1.5, -9.0, -9.0];
    assert_eq!(s.sample(&l2), 1, "-1.0 * 2 = -2.0 < -1.5");
    // Unseen tokens are untouched.
    let l3 = [0.5f32, 0.1, 0.9, 0.0];
    assert_eq!(s.sample(&l3), 2);
    // The window forgets: after 4 other tokens, token 0 is free again.
    for t in [1, 2, 3, 1] {
        s.accept(t);
    }
    assert_eq!(s.sample(&l), 0);

    // frequency penalty counts occurrences, presence penalty does not
    let mut f = Sampler::new(
        SamplerParams {
            freq_penalty: 0.4,
            repeat_last_n: 8,
            ..greedy
        },
        3,
    );
    let lf = [1.0f32, 0.5, 0.0];
    f.accept(0);
    assert_eq!(f.sample(&lf), 0, "1.0 - 0.4 = 0.6 > 0.5");
    f.accept(0);
    assert_eq!(f.sample(&lf), 1, "1.0 - 0.8 = 0.2 < 0.5");
    let mut pr = Sampler::new(
        SamplerParams {
            presence_penalty: 0.4,
            repeat_last_n: 8,
            ..greedy
        },
        3,
    );
    for _ in 0..5 {
        pr.accept(0);
    }
    assert_eq!(
        pr.sample(&lf),
        0,
        "1.0 - 0.4 = 0.6 > 0.5, however many times"
    );
    // Ids outside the vocabulary are ignored.
    pr.accept(u32::MAX);
    pr.reset();
    assert_eq!(pr.sample(&[0.1, 0.2, 0.0]), 1);
}

#[test]
fn strange_parameters_never_panic() {
    let l = logits(100, 1);
    let weird = [
        SamplerParams {
            repeat_last_n: usize::MAX,
            repeat_penalty: 0.0,
            ..SamplerParams::default()
        },
        SamplerParams {
            temp: f32::NAN,
            top_p: f32::NAN,
            min_p: f32::NAN,
            ..SamplerParams::default()
        },
        SamplerParams {
            top_k: i32::MIN,
            top_p: -1.0,
            min_p: 2.0,
            temp: 1e-30,
            ..SamplerParams::default()
        },
        SamplerParams {
            temp: f32::INFINITY,
            freq_penalty: f32::INFINITY,
            ..SamplerParams::default()
        },
    ];
    for p in weird {
        let mut s = Sampler::new(p, 100);
        for _ in 0..10 {
            let id = s.sample(&l);
            assert!(id < 100);
            s.accept(id);
        }
        assert!(s.sample(&[f32::NAN; 100]) < 100);
        assert!(s.sample(&[f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY]) < 3);
        assert!(
            s.sample(&vec![0.0; 1000]) < 100,
            "longer logits are cut to n_vocab"
        );
    }
    let mut empty = Sampler::new(SamplerParams::default(), 0);
    assert_eq!(empty.sample(&l), 0);
    empty.accept(5);
}

#[test]
fn stop_matcher_streams() {
    let mut m = StopMatcher::new(["<|im_end|>", "\nUser:"]);
    let mut shown = String::new();
    let mut stop = None;
    for piece in [
        "Paris",
        " is",
        " the capital.",
        "<|im",
        "_e",
        "nd|>",
        "ignored",
    ] {
        let o = m.push(piece);
        shown.push_str(o.text);
        if o.stopped.is_some() {
            stop = o.stopped;
            break;
        }
    }
    assert_eq!(shown, "Paris is the capital.");
    assert_eq!(stop, Some(0));
    // A false start is released once it stops matching.
    let mut m = StopMatcher::new(["\nUser:"]);
    assert_eq!(m.push("a\nUs").text, "a");
    assert_eq!(m.push("ed").text, "\nUsed");
    assert_eq!(m.finish(), "");
}

/// Time per sampled token at Qwen's vocabulary size. Run with
/// `cargo test --release --test sampler -- --ignored --nocapture speed`.
#[test]
#[ignore]
fn speed_sampler() {
    let n_vocab = 151_936;
    let l = logits(n_vocab, 3);
    let cases = [
        ("greedy", SamplerParams::greedy()),
        (
            "default (top-k 40, top-p 0.95, min-p 0.05, temp 0.8)",
            SamplerParams {
                seed: 1,
                ..SamplerParams::default()
            },
        ),
        (
            "default + repeat penalty 1.1",
            SamplerParams {
                seed: 1,
                repeat_penalty: 1.1,
                ..SamplerParams::default()
            },
        ),
        (
            "top-k off (full sort)",
            SamplerParams {
                seed: 1,
                top_k: 0,
                ..SamplerParams::default()
            },
        ),
    ];
    for (name, p) in cases {
        let mut s = Sampler::new(p, n_vocab);
        for i in 0..64 {
            s.accept(i * 7);
        }
        let reps = 50;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            let id = s.sample(std::hint::black_box(&l));
            s.accept(id);
        }
        eprintln!(
            "{name}: {:.3} ms per token",
            t0.elapsed().as_secs_f64() * 1e3 / reps as f64
        );
    }
}
