//! Mat-vec throughput per weight format and backend, in weight bytes per second, next to a plain
//! memory-read baseline measured in the same run (so each figure reads as a fraction of bandwidth):
//! at the start and end (`memread_start`, `memread_end`) and as `read/t1`, `read/t2` at the head of
//! each mat-vec group, just before its kernels.
//!
//! Shapes: 2048x2048 and 5632x2048 (TinyLlama's attention and FFN). Each iteration uses the next of
//! several copies of the matrix, together larger than the last-level cache, so the weights stream
//! from memory as they do in a real decode step. Backends: `scalar` (`scalar_kernels()`) and the
//! selected table (`kernels()`, e.g. avx2); 1 and 2 threads.
//!
//! Then prefill (512 tokens x W) for Q4_0, Q8_0 and Q4_K, in multiply-adds per second.
//!
//! Run: `cargo bench --bench matvec` (filter with e.g. `-- q4_0`); `FERROLM_BENCH_QUICK=1` limits
//! the formats to Q4_0, Q8_0 and Q4_K; `FERROLM_BENCH_PREFILL=1` runs only the prefill groups;
//! `FERROLM_BENCH_BATCHED=1` only the batched decode groups (1 and 4 tokens through the decode
//! kernels, tokens per second; `FERROLM_BENCH_SHAPE=1536x576` for another shape);
//! `FERROLM_BENCH_WORKING_SET=MiB` changes the bytes of weights cycled through (e.g. `1`: one copy
//! of the matrix, cache-resident after the first pass, which shows a kernel's compute speed).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrolm::kernels::dispatch::{kernels, scalar_kernels};
use ferrolm::kernels::matmul::{matmul_q_mixed_with, matmul_q_with, ActBuf, MatRef};
use ferrolm::kernels::pool::ThreadPool;
use ferrolm::kernels::testing::{lcg_values, WEIGHT_TYPES};
use ferrolm::kernels::{GgmlType, KernelTable};

/// Bytes of weights cycled through per benchmark (well above any L3 here).
const WORKING_SET: usize = 192 << 20;
/// Baseline buffer size.
const BASELINE_BYTES: usize = 256 << 20;

/// `len` values `f(i)` on 2 MiB pages where the kernel gives them (MADV_HUGEPAGE on Linux): the
/// weights and the baseline buffer alike, as a model map whose page cache is in 2 MiB folios (with
/// 4 KiB pages the ratio would measure page walks).
struct Huge<T> {
    store: Vec<T>,
    off: usize,
}

impl<T> Huge<T> {
    fn new(len: usize, f: impl FnMut(usize) -> T) -> Self {
        const PAGE: usize = 2 << 20;
        let pad = PAGE / std::mem::size_of::<T>();
        let mut store: Vec<T> = Vec::with_capacity(len + pad);
        let off = store.as_ptr().align_offset(PAGE).min(pad);
        #[cfg(target_os = "linux")]
        // SAFETY: [off, off + len) lies inside the allocation (capacity len + pad, off <= pad); the
        // hint changes no contents.
        unsafe {
            libc::madvise(
                store.as_mut_ptr().add(off).cast(),
                len * std::mem::size_of::<T>(),
                libc::MADV_HUGEPAGE,
            );
        }
        let mut f = f;
        store.extend((0..off + len).map(|i: usize| f(i.saturating_sub(off))));
        Huge { store, off }
    }

    fn as_slice(&self) -> &[T] {
        &self.store[self.off..]
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.store[self.off..]
    }
}

/// `copies` copies of an [n_rows, n_cols] matrix of `ty`, made by quantizing 64 random rows with the
/// reference quantizer and tiling them.
fn weights(ty: GgmlType, n_rows: usize, n_cols: usize, copies: usize) -> Huge<u8> {
    let rb = ty.row_bytes(n_cols as u64).expect("whole blocks") as usize;
    let q = scalar_kernels()
        .get(ty)
        .and_then(|k| k.quantize_row_ref)
        .expect("reference quantizer");
    let base_rows = 64.min(n_rows);
    let xf = lcg_values(base_rows * n_cols, ty.id() as u64 + 1);
    let mut base = vec![0u8; base_rows * rb];
    for (x, o) in xf.chunks_exact(n_cols).zip(base.chunks_exact_mut(rb)) {
        q(x, o);
    }
    let one = n_rows * rb;
    let mut out = Huge::new(one * copies, |_| 0u8);
    for (i, chunk) in out.as_mut_slice().chunks_exact_mut(rb).enumerate() {
        let r = i % base_rows;
        chunk.copy_from_slice(&base[r * rb..(r + 1) * rb]);
    }
    out
}

/// Sums `buf` across the pool's threads (each its share): the plain read the mat-vecs are
/// compared with.
fn read_sum(pool: &ThreadPool, buf: &[u64]) -> u64 {
    let parts: [std::sync::atomic::AtomicU64; 2] = Default::default();
    pool.run(&|i, n| {
        let lo = buf.len() * i / n;
        let hi = buf.len() * (i + 1) / n;
        // Four independent lanes so the sum is not latency bound.
        let mut acc = [0u64; 4];
        for c in buf[lo..hi].chunks_exact(4) {
            for k in 0..4 {
                acc[k] = acc[k].wrapping_add(c[k]);
            }
        }
        let s = acc.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        parts[i.min(1)].fetch_add(s, std::sync::atomic::Ordering::Relaxed);
    });
    parts[0].load(std::sync::atomic::Ordering::Relaxed)
}

fn bench_baseline(c: &mut Criterion, pools: &[ThreadPool], group: &str, buf: &[u64]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes(std::mem::size_of_val(buf) as u64));
    for pool in pools {
        g.bench_function(
            BenchmarkId::new("sum_256MiB", format!("t{}", pool.n_threads())),
            |b| b.iter(|| black_box(read_sum(pool, buf))),
        );
    }
    g.finish();
}

/// Each shape's group starts with `read/t1` and `read/t2`, the plain read of the baseline buffer
/// `base` measured right before that group's mat-vecs: a shared VM's memory speed drifts within a
/// run, so each mat-vec's share of the read rate is best taken against the read of its own group.
fn bench_format(c: &mut Criterion, pools: &[ThreadPool], ty: GgmlType, base: &[u64]) {
    // The scalar table, and the selected one when it has a different kernel for this format.
    let scalar_dot = scalar_kernels()
        .get(ty)
        .and_then(|k| k.vec_dot)
        .map(|f| f as usize);
    let selected = kernels().get(ty).expect("kernels for every format");
    let mut tables: Vec<(&str, &KernelTable)> = vec![("scalar", scalar_kernels())];
    if selected.vec_dot.map(|f| f as usize) != scalar_dot {
        // Labelled with the table's backend: the mat-vec may run the entry's gemv (AVX-512 on a
        // CPU with VNNI) while its vec_dot, which `backend` names, is an AVX2 one.
        tables.push((kernels().backend.name(), kernels()));
    }
    for &(n_rows, n_cols) in &[(2048usize, 2048usize), (5632, 2048)] {
        let rb = ty.row_bytes(n_cols as u64).unwrap() as usize;
        let one = n_rows * rb;
        let working_set = std::env::var("FERROLM_BENCH_WORKING_SET")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(WORKING_SET, |mib| mib << 20);
        let copies = working_set.div_ceil(one).max(1);
        let data = weights(ty, n_rows, n_cols, copies);
        let data = data.as_slice();
        let x = lcg_values(n_cols, 3);
        let mut y = vec![0.0f32; n_rows];
        let mut g = c.benchmark_group(format!(
            "matvec_{}_{}x{}",
            ty.name().to_lowercase(),
            n_rows,
            n_cols
        ));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        g.throughput(Throughput::Bytes(std::mem::size_of_val(base) as u64));
        for pool in pools {
            g.bench_function(
                BenchmarkId::new("read", format!("t{}", pool.n_threads())),
                |b| b.iter(|| black_box(read_sum(pool, base))),
            );
        }
        g.throughput(Throughput::Bytes(one as u64));
        for &(name, table) in &tables {
            let vdt = table.get(ty).unwrap().vec_dot_type;
            let mut acts = ActBuf::with_capacity(n_cols, 1);
            acts.quantize_with(table, vdt, &x, 1, n_cols);
            for pool in pools {
                let mut i = 0usize;
                g.bench_function(
                    BenchmarkId::new(name, format!("t{}", pool.n_threads())),
                    |b| {
                        b.iter(|| {
                            let w = MatRef::new(ty, &data[i * one..(i + 1) * one], n_rows, n_cols);
                            matmul_q_with(table, pool, &w, &acts, &mut y);
                            i = (i + 1) % copies;
                            black_box(y[0])
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

/// Prefill: 512 tokens x W (TinyLlama shapes), in multiply-adds per second (elements = MACs), so
/// tokens/s of a whole model = MAC/s / MACs per token (about 1.04e9 for TinyLlama-1.1B).
fn bench_prefill(c: &mut Criterion, pools: &[ThreadPool], ty: GgmlType) {
    const N_TOK: usize = 512;
    for &(n_rows, n_cols) in &[(2048usize, 2048usize), (5632, 2048)] {
        let data = weights(ty, n_rows, n_cols, 1);
        let data = data.as_slice();
        let x = lcg_values(N_TOK * n_cols, 4);
        let mut y = vec![0.0f32; N_TOK * n_rows];
        let mut g = c.benchmark_group(format!(
            "prefill{}_{}_{}x{}",
            N_TOK,
            ty.name().to_lowercase(),
            n_rows,
            n_cols
        ));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        g.throughput(Throughput::Elements((N_TOK * n_rows * n_cols) as u64));
        let table = kernels();
        let vdt = table.get(ty).unwrap().vec_dot_type;
        let mut acts = ActBuf::with_capacity(n_cols, N_TOK);
        acts.quantize_with(table, vdt, &x, N_TOK, n_cols);
        let w = MatRef::new(ty, data, n_rows, n_cols);
        let name = if table.get(ty).unwrap().gemm_tile.is_some() {
            "tile"
        } else {
            "vec_dot"
        };
        for pool in pools {
            g.bench_function(
                BenchmarkId::new(name, format!("t{}", pool.n_threads())),
                |b| {
                    b.iter(|| {
                        matmul_q_with(table, pool, &w, &acts, &mut y);
                        black_box(y[0])
                    })
                },
            );
        }
        g.finish();
    }
}

/// Batched decode (continuous batching: several sequences' next tokens in one pass), 1 and 4
/// tokens through the decode kernels (`gemv`, `gemv_multi`) on TinyLlama's FFN shape, the weights
/// streaming from memory as in `bench_format`, in tokens per second: the 4-token figure over the
/// 1-token one is what sharing the pass over the weights gains.
fn bench_batched(c: &mut Criterion, pools: &[ThreadPool], ty: GgmlType) {
    // FERROLM_BENCH_SHAPE=ROWSxCOLS for another shape (e.g. 1536x576, SmolLM2's gate and up).
    let (n_rows, n_cols) = std::env::var("FERROLM_BENCH_SHAPE")
        .ok()
        .and_then(|s| {
            let (r, c) = s.split_once('x')?;
            Some((r.parse().ok()?, c.parse().ok()?))
        })
        .unwrap_or((5632usize, 2048usize));
    let rb = ty.row_bytes(n_cols as u64).unwrap() as usize;
    let one = n_rows * rb;
    let copies = WORKING_SET.div_ceil(one).max(1);
    let data = weights(ty, n_rows, n_cols, copies);
    let data = data.as_slice();
    let mut g = c.benchmark_group(format!(
        "batched_decode_{}_{}x{}",
        ty.name().to_lowercase(),
        n_rows,
        n_cols
    ));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let table = kernels();
    let vdt = table.get(ty).unwrap().vec_dot_type;
    for n_tok in [1usize, 4] {
        let x = lcg_values(n_tok * n_cols, 5);
        let mut y = vec![0.0f32; n_tok * n_rows];
        let mut acts = ActBuf::with_capacity(n_cols, n_tok);
        acts.quantize_with(table, vdt, &x, n_tok, n_cols);
        g.throughput(Throughput::Elements(n_tok as u64));
        for pool in pools {
            let mut i = 0usize;
            g.bench_function(
                BenchmarkId::new(format!("tok{n_tok}"), format!("t{}", pool.n_threads())),
                |b| {
                    b.iter(|| {
                        let w = MatRef::new(ty, &data[i * one..(i + 1) * one], n_rows, n_cols);
                        matmul_q_mixed_with(table, pool, &w, &acts, &mut y, 0);
                        i = (i + 1) % copies;
                        black_box(y[0])
                    })
                },
            );
        }
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    if std::env::var_os("FERROLM_BENCH_BATCHED").is_some() {
        let pools = [ThreadPool::new(1), ThreadPool::new(2)];
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            bench_batched(c, &pools, ty);
        }
        return;
    }
    if std::env::var_os("FERROLM_BENCH_PREFILL").is_some() {
        let pools = [ThreadPool::new(1), ThreadPool::new(2)];
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            bench_prefill(c, &pools, ty);
        }
        return;
    }
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let base = Huge::new(BASELINE_BYTES / 8, |i| i as u64);
    let base = base.as_slice();
    bench_baseline(c, &pools, "memread_start", base);
    let quick = std::env::var_os("FERROLM_BENCH_QUICK").is_some();
    let formats: &[GgmlType] = if quick {
        &[GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K]
    } else {
        &WEIGHT_TYPES
    };
    for &ty in formats {
        bench_format(c, &pools, ty, base);
    }
    bench_baseline(c, &pools, "memread_end", base);
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K] {
        bench_prefill(c, &pools, ty);
    }
}

criterion_group!(matvec, benches);
criterion_main!(matvec);
