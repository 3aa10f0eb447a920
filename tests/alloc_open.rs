//! Heap used by `Gguf::open`, measured with a counting global allocator (this file is its own test
//! binary, so the allocator counts nothing else's tests).
//!
//! Opening a model maps the file and builds an index of one small struct per key and per tensor:
//! nothing of the tensor data or of the token arrays is copied. So the bytes allocated must be far
//! below the file size, and reading metadata, token strings and tensor views afterwards must not
//! allocate at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrolm::gguf::{Gguf, Value};

mod common;

/// Counts allocations made on threads that switched counting on (libtest's own threads do not).
struct Counting;

static BYTES: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    ON.try_with(|c| c.get()).unwrap_or(false)
}

fn note_alloc(size: usize) {
    if counting() {
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        let live = LIVE.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

fn note_free(size: usize) {
    if counting() {
        // Saturating: a block allocated before counting began may be freed while counting.
        let _ = LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
            Some(l.saturating_sub(size as u64))
        });
    }
}

// SAFETY: every method forwards to the system allocator with the caller's arguments unchanged; the
// bookkeeping touches only atomics and a const-initialized thread-local without a destructor, so it
// never allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract; passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        // SAFETY: `ptr` came from this allocator (hence from `System`) with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        // SAFETY: as for `dealloc` and `alloc`; the new size is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Debug, Clone, Copy)]
struct Usage {
    bytes: u64,
    calls: u64,
    peak: u64,
}

/// Heap allocated on this thread while `f` runs.
fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    BYTES.store(0, Ordering::Relaxed);
    CALLS.store(0, Ordering::Relaxed);
    LIVE.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    ON.with(|c| c.set(true));
    let r = f();
    ON.with(|c| c.set(false));
    let u = Usage {
        bytes: BYTES.load(Ordering::Relaxed),
        calls: CALLS.load(Ordering::Relaxed),
        peak: PEAK.load(Ordering::Relaxed),
    };
    (r, u)
}

/// Reads every metadata value (iterating arrays to the end: all token strings), and every tensor
/// view's first and last byte. Returns a digest so none of it is optimised away.
fn walk(g: &Gguf) -> u64 {
    let mut h = 0u64;
    for (k, v) in g.metadata() {
        h = h.wrapping_add(k.len() as u64);
        if let Value::Array(a) = v {
            for e in a.iter() {
                if let Value::Str(s) = e {
                    h = h.wrapping_mul(31).wrapping_add(s.len() as u64);
                }
            }
        }
    }
    for t in g.tensors() {
        h = h.wrapping_add(
            t.data.len() as u64
                + *t.data.first().unwrap_or(&0) as u64
                + *t.data.last().unwrap_or(&0) as u64,
        );
    }
    h
}

fn check(name: &str, n_tokens: usize) {
    let Some(path) = common::model(name) else {
        return;
    };
    let file_len = std::fs::metadata(&path).unwrap().len();
    let (g, open) = measure(|| Gguf::open(&path).unwrap());
    assert!(g.is_mapped());
    let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), n_tokens);
    let token_bytes = tokens.raw_bytes().len() as u64;
    println!(
        "{name}: Gguf::open allocated {} bytes ({:.1} KiB) in {} allocations, peak {} bytes live; file {} bytes \
         ({:.0} MB), {} keys, {} tensors, token array {} bytes",
        open.bytes,
        open.bytes as f64 / 1024.0,
        open.calls,
        open.peak,
        file_len,
        file_len as f64 / 1e6,
        g.n_metadata(),
        g.n_tensors(),
        token_bytes
    );
    // The index: a few dozen bytes per key and per tensor, plus the hash sets used to reject
    // duplicate names while parsing. Nothing near the size of the token array or the weights.
    assert!(
        open.bytes < 1 << 20,
        "Gguf::open allocated {} bytes for a {file_len}-byte file",
        open.bytes
    );
    assert!(
        open.bytes < token_bytes / 4,
        "open allocated {} bytes: is the token array copied?",
        open.bytes
    );
    let per_entry = open.bytes / (g.n_metadata() + g.n_tensors()) as u64;
    assert!(per_entry < 512, "{per_entry} bytes per key/tensor");

    // Reading everything afterwards borrows the map: not one allocation.
    let (h, read) = measure(|| walk(&g));
    println!("{name}: reading all metadata (every token string) and every tensor view allocated {} bytes", read.bytes);
    assert_eq!(
        read.calls, 0,
        "reading metadata and tensor views allocated {} bytes",
        read.bytes
    );
    assert_ne!(h, 0);

    let (_, drop_usage) = measure(|| drop(g));
    assert_eq!(drop_usage.calls, 0);
}

#[test]
fn open_allocates_only_the_index() {
    check("SmolLM2-135M-Instruct.Q4_1.gguf", 49152);
    check("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 151936);
}
