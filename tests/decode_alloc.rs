//! Decoding a token allocates nothing: a counting global allocator watches a decode step after
//! the first; and the KV cache is allocated once, when the context is created.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ferrolm::model::{Context, ContextParams, Logits, Model};
use ferrolm::sampler::{Sampler, SamplerParams};

mod common;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(n, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn run(model_file: &str, threads: usize) {
    let Some(path) = common::model(model_file) else {
        return;
    };
    let model = Arc::new(Model::load(&path).unwrap());
    let nv = model.config().n_vocab;
    for kv in [
        ferrolm::kv_cache::KvType::F16,
        ferrolm::kv_cache::KvType::Q8_0,
    ] {
        let mut ctx = Context::new(
            Arc::clone(&model),
            ContextParams {
                n_ctx: 128,
                n_threads: threads,
                kv_type: kv,
                ..Default::default()
            },
        )
        .unwrap();
        let mut sampler = Sampler::new(
            SamplerParams {
                seed: 7,
                ..SamplerParams::default()
            },
            nv,
        );
        let kv_ptr = ctx.kv_cache().storage_ptr();
        let kv_size = ctx.kv_cache().size_bytes();
        ctx.eval(&[504, 3575, 282, 4649, 314], Logits::Last)
            .unwrap();
        // The first decoded token may size lazily grown buffers; after that nothing is allocated.
        let mut id = sampler.sample(ctx.logits());
        ctx.eval(&[id], Logits::Last).unwrap();
        let before = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
        for _ in 0..20 {
            id = sampler.sample(ctx.logits());
            sampler.accept(id);
            ctx.eval(&[id], Logits::Last).unwrap();
        }
        let after = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
        assert_eq!(
            after,
            before,
            "{model_file} {kv:?}, {threads} threads: 20 decode steps allocated {} times, {} bytes",
            after.0 - before.0,
            after.1 - before.1
        );
        assert_eq!(ctx.kv_cache().storage_ptr(), kv_ptr, "the KV cache moved");
        assert_eq!(
            ctx.kv_cache().size_bytes(),
            kv_size,
            "the KV cache changed size"
        );
    }
}

#[test]
fn decode_allocates_nothing() {
    // One test function: the counters are global, so no other test may run concurrently here.
    run("SmolLM2-135M-Instruct.Q4_1.gguf", 1);
    run("SmolLM2-135M-Instruct.Q4_1.gguf", 2);
    run("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 2);
}

/// The KV cache is one allocation of exactly its size, made when the context is created.
#[test]
fn kv_cache_is_one_allocation() {
    use ferrolm::kv_cache::{KvCache, KvType};
    // 30 layers x 2 x 3 heads x 512 positions x 64 dims x 2 bytes.
    let b = KvCache::bytes_needed(KvType::F16, 30, 512, 3, 64).unwrap();
    assert_eq!(b, 30 * 2 * 3 * 512 * 64 * 2);
    assert_eq!(
        KvCache::bytes_needed(KvType::Q8_0, 30, 512, 3, 64).unwrap(),
        30 * 2 * 3 * 512 * 2 * 34
    );
}
