//! Mat-vec and batched mat-mul over the kernel table: quantize activations once, split rows across threads.
//!
//! The decoder quantizes an input once ([`ActBuf::quantize_with`]) and calls [`matmul_q_with`] for
//! each matrix that reads it (Q, K and V share one, gate and up another); [`matmul_with`] does both.
//!
//! Prefill chunks are fixed runs of `PREFILL_ROWS` rows. Decode claims depend on the thread count
//! and on timing, but a row's result never depends on which rows share a call (the `GemvFn`
//! contract), so the output is bit-identical for any number of threads.
//! Threads take chunks from a shared atomic counter (kept on the caller's stack: no allocation).
//!
//! - `n_tok == 1` (decode): runs of rows claimed "guided" (see `DECODE_MIN_CHUNK_BYTES`), each
//!   through the type's `gemv` (several rows x one token) or one `vec_dot` per row when it has none.
//! - mixed calls ([`matmul_q_mixed_with`]: several sequences' decode tokens, after any prompt
//!   chunks): the decode tokens claim rows the same way and go through the type's `gemv_multi` in
//!   groups of up to `GEMV_MULTI_MAX` tokens (one pass over the weights; each token the bits a
//!   one-token call gives it), else one `gemv` per token over pieces that stay in cache.
//! - `n_tok > 1` (prefill): for each chunk of `PREFILL_ROWS` rows, tiles of up to `TILE_TOKENS`
//!   tokens go through the type's `gemm_tile` (which unpacks each weight block once per tile and reuses
//!   it across the tokens), or a `vec_dot` loop when the type has none.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::blocks::cast_blocks_mut;
use crate::dispatch::{block_align, kernels, KernelTable, TypeKernels, GEMV_MULTI_MAX};
use crate::pool::ThreadPool;
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// Weight rows per prefill chunk (a multiple of every tile kernel's row group).
pub const PREFILL_ROWS: usize = 64;
/// Tokens per prefill tile.
pub const TILE_TOKENS: usize = 128;
/// Decode hands out runs of consecutive rows "guided", as OpenMP calls it: each claim takes
/// 1/n_threads of the rows still unclaimed, never fewer than `DECODE_MIN_CHUNK_BYTES` of weights.
/// So each thread first streams one long run (the hardware prefetcher follows long runs), and the
/// runs shrink towards the end, so the threads finish together (docs/perf.md).
const DECODE_MIN_CHUNK_BYTES: usize = 32 * 1024;

/// A weight matrix view: `n_rows` rows of `n_cols` elements of `ty`, row-major (GGUF 2-D tensor,
/// ne0 = n_cols, ne1 = n_rows), borrowed from the memory map.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
    pub n_rows: usize,
    pub n_cols: usize,
}

impl<'a> MatRef<'a> {
    /// `n_rows` rows of `n_cols` elements of `ty` in `data`.
    pub fn new(ty: GgmlType, data: &'a [u8], n_rows: usize, n_cols: usize) -> Self {
        MatRef {
            ty,
            data,
            n_rows,
            n_cols,
        }
    }

    /// Bytes of one row. Panics when `n_cols` is not a whole number of blocks of `ty`.
    pub fn row_bytes(&self) -> usize {
        row_bytes(self.ty, self.n_cols)
    }
}

fn row_bytes(ty: GgmlType, n_cols: usize) -> usize {
    let be = ty.block_elems();
    assert!(
        n_cols % be == 0,
        "{n_cols} columns is not a whole number of {ty} blocks of {be}"
    );
    n_cols / be * ty.block_bytes()
}

/// Reusable, preallocated activation buffer (8-byte aligned storage) holding `x` quantized to a
/// `vec_dot_type`: `n_tok` rows of `row_bytes` bytes.
#[derive(Clone, Debug)]
pub struct ActBuf {
    /// Storage as u64 for 8-byte alignment (Q8_K has an f32 scale; F32 rows need 4).
    buf: Vec<u64>,
    ty: GgmlType,
    n_tok: usize,
    n_cols: usize,
    row_bytes: usize,
}

impl ActBuf {
    /// Room for `max_tokens` rows of `max_cols` elements in any activation type (F32 is the widest,
    /// 4 bytes per element; the Q8 formats take at most 292/256).
    pub fn with_capacity(max_cols: usize, max_tokens: usize) -> Self {
        let bytes = max_cols.saturating_mul(max_tokens).saturating_mul(4);
        ActBuf {
            buf: vec![0u64; bytes.div_ceil(8)],
            ty: GgmlType::F32,
            n_tok: 0,
            n_cols: 0,
            row_bytes: 0,
        }
    }

    /// Quantize x: [n_tok, n_cols] f32 into this buffer in `ty` (a vec_dot_type), with the
    /// process-wide kernel table. No allocation when within capacity.
    pub fn quantize(&mut self, ty: GgmlType, x: &[f32], n_tok: usize, n_cols: usize) {
        self.quantize_with(kernels(), ty, x, n_tok, n_cols);
    }

    /// [`ActBuf::quantize`] with an explicit kernel table (benches and tests compare tables).
    /// Uses the table's `from_float` for `ty`, or copies the f32 values for F32.
    pub fn quantize_with(
        &mut self,
        table: &KernelTable,
        ty: GgmlType,
        x: &[f32],
        n_tok: usize,
        n_cols: usize,
    ) {
        self.quantize_on(table, None, ty, x, n_tok, n_cols);
    }

    /// [`ActBuf::quantize_with`] with the rows shared among `pool`'s threads when there are many
    /// (a prompt batch: at least `PAR_QUANT_MIN` elements); each row is quantized on its own, so
    /// the bytes are the same either way.
    pub fn quantize_par(
        &mut self,
        table: &KernelTable,
        pool: &ThreadPool,
        ty: GgmlType,
        x: &[f32],
        n_tok: usize,
        n_cols: usize,
    ) {
        let pool = (pool.n_threads() > 1 && n_tok > 1 && x.len() >= PAR_QUANT_MIN).then_some(pool);
        self.quantize_on(table, pool, ty, x, n_tok, n_cols);
    }

    fn quantize_on(
        &mut self,
        table: &KernelTable,
        pool: Option<&ThreadPool>,
        ty: GgmlType,
        x: &[f32],
        n_tok: usize,
        n_cols: usize,
    ) {
        assert!(
            x.len() == n_tok * n_cols,
            "activation length {} is not n_tok {n_tok} x n_cols {n_cols}",
            x.len()
        );
        let rb = row_bytes(ty, n_cols);
        let need = (rb * n_tok).div_ceil(8);
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        }
        self.ty = ty;
        self.n_tok = n_tok;
        self.n_cols = n_cols;
        self.row_bytes = rb;
        if n_tok == 0 || n_cols == 0 {
            return;
        }
        let bytes = &mut as_bytes_mut_u64(&mut self.buf)[..rb * n_tok];
        if ty == GgmlType::F32 {
            cast_blocks_mut::<f32>(bytes).copy_from_slice(x);
            return;
        }
        let from_float = table
            .get(ty)
            .and_then(|k| k.from_float)
            .unwrap_or_else(|| panic!("no from_float for activation type {ty}"));
        // x: [n_tok, n_cols] -> bytes: [n_tok, rb]
        match pool {
            Some(pool) => pool.for_each_part(bytes, rb, &|t, out| {
                from_float(&x[t * n_cols..(t + 1) * n_cols], out)
            }),
            None => {
                for (xr, out) in x.chunks_exact(n_cols).zip(bytes.chunks_exact_mut(rb)) {
                    from_float(xr, out);
                }
            }
        }
    }

    /// The activation type the buffer currently holds.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Tokens (rows) currently held.
    pub fn n_tok(&self) -> usize {
        self.n_tok
    }

    /// Elements per row currently held.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Bytes per row in the current type.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The quantized rows: [n_tok, row_bytes].
    pub fn bytes(&self) -> &[u8] {
        &as_bytes_u64(&self.buf)[..self.row_bytes * self.n_tok]
    }

    /// Token `t`'s quantized row.
    pub fn row(&self, t: usize) -> &[u8] {
        &self.bytes()[t * self.row_bytes..(t + 1) * self.row_bytes]
    }
}

fn as_bytes_u64(v: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any byte is a valid u8; the length is the exact byte size.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 8) }
}

fn as_bytes_mut_u64(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: as above; any bytes written form valid u64 values, and the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 8) }
}

/// The output pointer shared by the threads; each thread writes only the elements of its chunks.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: threads write disjoint elements (chunks of rows are handed out once each), and `run`
// returns only after every thread is done, so the exclusive borrow of `y` outlives all writes.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Writes `src` at elements `i..i + src.len()` (one copy, rather than an element loop that
    /// reloads the pointer each time).
    ///
    /// # Safety
    /// The run must be inside the output slice, and no other thread may access it meanwhile.
    #[inline(always)]
    unsafe fn write_run(self, i: usize, src: &[f32]) {
        // SAFETY: guaranteed by the caller; `src` is a local buffer, not part of the output.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.0.add(i), src.len()) }
    }
}

/// Quantize x: [n_tok, n_cols] into `acts` (w's `vec_dot_type`), then [`matmul_q_with`].
pub fn matmul_with(
    table: &KernelTable,
    pool: &ThreadPool,
    w: &MatRef,
    x: &[f32],
    n_tok: usize,
    y: &mut [f32],
    acts: &mut ActBuf,
) {
    let k = entry(table, w.ty);
    acts.quantize_with(table, k.vec_dot_type, x, n_tok, w.n_cols);
    matmul_q_with(table, pool, w, acts, y);
}

fn entry(table: &KernelTable, ty: GgmlType) -> &TypeKernels {
    table
        .get(ty)
        .unwrap_or_else(|| panic!("no kernels for weight type {ty}"))
}

/// Checks one weight matrix against the activations and the output, and returns its kernels.
fn checked<'t>(table: &'t KernelTable, w: &MatRef, acts: &ActBuf, y: &[f32]) -> &'t TypeKernels {
    let k = entry(table, w.ty);
    assert!(k.vec_dot.is_some(), "no vec_dot for weight type {}", w.ty);
    assert!(
        acts.ty() == k.vec_dot_type,
        "activations are {} but {} weights dot with {}",
        acts.ty(),
        w.ty,
        k.vec_dot_type
    );
    assert!(
        acts.n_cols() == w.n_cols,
        "activations have {} columns, weights {}",
        acts.n_cols(),
        w.n_cols
    );
    let (n_rows, wrb) = (w.n_rows, w.row_bytes());
    assert!(
        w.data.len() == n_rows * wrb,
        "weight data is {} bytes, expected {n_rows} rows x {wrb} bytes",
        w.data.len()
    );
    assert!(
        y.len() == acts.n_tok() * n_rows,
        "output length {} is not n_tok {} x n_rows {n_rows}",
        y.len(),
        acts.n_tok()
    );
    k
}

/// Most weight matrices one [`matmul_q_many_with`] call takes (Q, K and V).
pub const MAX_FUSED: usize = 4;

/// Several matrices that share one quantized input, `y_j = x · W_jᵀ` for each `(W_j, y_j)` of
/// `jobs` (at most [`MAX_FUSED`]): Q, K and V, or gate and up. A decode step (`n_tok == 1`) runs
/// them as one parallel call over their rows in sequence, so the threads meet once instead of
/// once per matrix and the short K and V mat-vecs do not each start and drain both threads'
/// streams; each row is still computed by its own matrix's kernel, so results are the same bit for
/// bit as one [`matmul_q_with`] per matrix. Prefill runs them one after another.
pub fn matmul_q_many_with(
    table: &KernelTable,
    pool: &ThreadPool,
    jobs: &mut [(MatRef, &mut [f32])],
    acts: &ActBuf,
) {
    matmul_q_many_mixed_with(table, pool, jobs, acts, acts.n_tok());
}

/// [`matmul_q_many_with`] where only the first `n_tile` tokens go through the prefill tiles and
/// the others through the decode kernels ([`matmul_q_mixed_with`]).
pub fn matmul_q_many_mixed_with(
    table: &KernelTable,
    pool: &ThreadPool,
    jobs: &mut [(MatRef, &mut [f32])],
    acts: &ActBuf,
    n_tile: usize,
) {
    assert!(
        jobs.len() <= MAX_FUSED,
        "{} matrices in one call, at most {MAX_FUSED}",
        jobs.len()
    );
    let n_tok = acts.n_tok();
    if n_tile > 0 || n_tok == 0 {
        for (w, y) in jobs.iter_mut() {
            matmul_q_mixed_with(table, pool, w, acts, y, n_tile);
        }
        return;
    }
    let mut parts = [None; MAX_FUSED];
    let (mut rows, mut bytes) = (0, 0);
    for (p, (w, y)) in parts.iter_mut().zip(jobs.iter_mut()) {
        let k = checked(table, w, acts, y);
        let wrb = w.row_bytes();
        *p = Some(Part {
            k,
            w: w.data,
            wrb,
            n_cols: w.n_cols,
            rows: w.n_rows,
            first_row: rows,
            first_byte: bytes,
            out: OutPtr(y.as_mut_ptr()),
        });
        rows += w.n_rows;
        bytes += w.data.len();
    }
    let dec = DecodeActs {
        a: acts.bytes(),
        arb: acts.row_bytes(),
        t0: 0,
        n: n_tok,
    };
    decode(pool, &parts[..jobs.len()], rows, bytes, dec);
}

/// y: [n_tok, n_rows] = x · Wᵀ, where `acts` holds x quantized to w's `vec_dot_type` (checked).
pub fn matmul_q_with(
    table: &KernelTable,
    pool: &ThreadPool,
    w: &MatRef,
    acts: &ActBuf,
    y: &mut [f32],
) {
    matmul_q_mixed_with(table, pool, w, acts, y, acts.n_tok());
}

/// Elements of a batch's activations from which [`ActBuf::quantize_par`] shares the rows among
/// the threads (below it, waking them costs more than the quantization).
const PAR_QUANT_MIN: usize = 1 << 15;

/// Rows per [`GemvMultiFn`](crate::dispatch::GemvMultiFn) call of a mixed call's decode tokens
/// (the size of the per-thread buffer its outputs go through).
const MULTI_ROWS: usize = 256;

/// Weight bytes per piece of the decode rows of a mixed call: each piece is read from memory once
/// and stays in cache while every decode token is dotted with it.
const DECODE_PIECE_BYTES: usize = 16 * 1024;

/// [`matmul_q_with`] where tokens `0..n_tile` go through the prefill path (tiles) and tokens
/// `n_tile..` through the decode kernels (`gemv`, else `vec_dot`): each of those gets exactly the
/// values a one-token call gives it, while the weights are still read from memory once for all
/// of them (pieces of `DECODE_PIECE_BYTES` rows, every decode token dotted with a piece while it
/// is in cache). This is how several sequences' decode steps share one pass over the weights
/// (continuous batching) and give each sequence the results it gets alone. With `n_tile` equal
/// to the token count, this is the plain prefill path; a single token is always decoded.
pub fn matmul_q_mixed_with(
    table: &KernelTable,
    pool: &ThreadPool,
    w: &MatRef,
    acts: &ActBuf,
    y: &mut [f32],
    n_tile: usize,
) {
    let k = checked(table, w, acts, y);
    let n_tok = acts.n_tok();
    assert!(n_tile <= n_tok, "{n_tile} tile tokens of {n_tok}");
    if n_tok > 1 && n_tile < n_tok {
        let n_rows = w.n_rows;
        let wrb = w.row_bytes();
        let arb = acts.row_bytes();
        let a = acts.bytes();
        let out = OutPtr(y.as_mut_ptr());
        if n_tile > 0 {
            prefill(pool, k, w, &a[..n_tile * arb], arb, n_tile, out, n_rows);
        }
        let part = Part {
            k,
            w: w.data,
            wrb,
            n_cols: w.n_cols,
            rows: n_rows,
            first_row: 0,
            first_byte: 0,
            out,
        };
        let dec = DecodeActs {
            a: &a[n_tile * arb..],
            arb,
            t0: n_tile,
            n: n_tok - n_tile,
        };
        decode(pool, &[Some(part)], n_rows, w.data.len(), dec);
        return;
    }
    let n = w.n_cols;
    let n_rows = w.n_rows;
    let wrb = w.row_bytes();
    if n_tok == 0 || n_rows == 0 {
        return;
    }
    let arb = acts.row_bytes();
    let a = acts.bytes();
    let out = OutPtr(y.as_mut_ptr());

    if n_tok == 1 {
        let part = Part {
            k,
            w: w.data,
            wrb,
            n_cols: n,
            rows: n_rows,
            first_row: 0,
            first_byte: 0,
            out,
        };
        decode(
            pool,
            &[Some(part)],
            n_rows,
            w.data.len(),
            DecodeActs::one(a),
        );
        return;
    }
    prefill(pool, k, w, a, arb, n_tok, out, n_rows);
}

/// o[r] = row r of `w` (`n` elements) · `a`, through the type's `gemv`, else one `vec_dot` per
/// row: what a decode call computes for these rows.
fn decode_rows(k: &TypeKernels, n: usize, w: Rows<u8>, a: &[u8], o: &mut [f32]) {
    if let Some(g) = k.gemv {
        g(n, w, a, o);
        return;
    }
    let vec_dot = k.vec_dot.expect("checked");
    for (r, v) in o.iter_mut().enumerate() {
        *v = vec_dot(n, w.row(r), a);
    }
}

/// The prefill path: y[t, r] for tokens 0..n_tok (activation rows of `arb` bytes in `a`), in
/// chunks of `PREFILL_ROWS` rows, tiles of up to `TILE_TOKENS` tokens through the type's
/// `gemm_tile`, or a `vec_dot` loop when it has none. `out` is [n_tok.., n_rows].
#[allow(clippy::too_many_arguments)]
fn prefill(
    pool: &ThreadPool,
    k: &TypeKernels,
    w: &MatRef,
    a: &[u8],
    arb: usize,
    n_tok: usize,
    out: OutPtr,
    n_rows: usize,
) {
    let vec_dot = k.vec_dot.expect("checked");
    let n = w.n_cols;
    let wrb = w.row_bytes();
    let next = AtomicUsize::new(0);
    // Chunks of PREFILL_ROWS rows x all tokens, in tiles of TILE_TOKENS tokens.
    let n_chunks = n_rows.div_ceil(PREFILL_ROWS);
    let tile = k.gemm_tile;
    pool.run(&|_, _| {
        // tmp: [TILE_TOKENS, PREFILL_ROWS], the tile's output before it is scattered into y.
        let mut tmp = [0.0f32; PREFILL_ROWS * TILE_TOKENS];
        loop {
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= n_chunks {
                break;
            }
            let r0 = c * PREFILL_ROWS;
            let nr = PREFILL_ROWS.min(n_rows - r0);
            let wc = &w.data[r0 * wrb..(r0 + nr) * wrb];
            let mut t0 = 0;
            while t0 < n_tok {
                let nt = TILE_TOKENS.min(n_tok - t0);
                let at = &a[t0 * arb..(t0 + nt) * arb];
                match tile {
                    Some(g) => g(
                        n,
                        Rows::new(wc, nr, wrb, wrb),
                        Rows::new(at, nt, arb, arb),
                        RowsMut::new(&mut tmp, nt, nr, PREFILL_ROWS),
                    ),
                    None => {
                        for t in 0..nt {
                            for r in 0..nr {
                                tmp[t * PREFILL_ROWS + r] = vec_dot(
                                    n,
                                    &wc[r * wrb..(r + 1) * wrb],
                                    &at[t * arb..(t + 1) * arb],
                                );
                            }
                        }
                    }
                }
                for t in 0..nt {
                    let src = &tmp[t * PREFILL_ROWS..t * PREFILL_ROWS + nr];
                    // SAFETY: (t0 + t) < n_tok and r0 + nr <= n_rows, so the run is inside
                    // y: [n_tok, n_rows]; rows r0..r0+nr belong to chunk c only.
                    unsafe { out.write_run((t0 + t) * n_rows + r0, src) };
                }
                t0 += nt;
            }
        }
    });
}

/// One matrix of a decode call: its kernels, weight rows, output, and where its rows and bytes
/// start in the call's sequence of matrices.
#[derive(Clone, Copy)]
struct Part<'a> {
    k: &'a TypeKernels,
    w: &'a [u8],
    wrb: usize,
    n_cols: usize,
    rows: usize,
    first_row: usize,
    first_byte: usize,
    out: OutPtr,
}

/// The decode tokens of a call: `n` activation rows of `arb` bytes from the start of `a`, whose
/// outputs are the rows `t0..t0 + n` of each matrix's output ([n_tok, rows]).
#[derive(Clone, Copy)]
struct DecodeActs<'a> {
    a: &'a [u8],
    arb: usize,
    t0: usize,
    n: usize,
}

impl<'a> DecodeActs<'a> {
    /// One token, output row 0.
    fn one(a: &'a [u8]) -> Self {
        DecodeActs {
            a,
            arb: a.len(),
            t0: 0,
            n: 1,
        }
    }

    fn row(&self, j: usize) -> &'a [u8] {
        &self.a[j * self.arb..(j + 1) * self.arb]
    }
}

/// The decode mat-vecs of `parts` (checked, all against the decode tokens `acts`), rows handed
/// out "guided" over the whole sequence: each claim takes 1/n_threads of the bytes still
/// unclaimed (at least `DECODE_MIN_CHUNK_BYTES`), cut at the end of its matrix, so each thread
/// streams long runs of weights. One token goes through the type's `gemv` (else `vec_dot`);
/// several (continuous batching) through its `gemv_multi` in groups of at most
/// `GEMV_MULTI_MAX`, else one `gemv` per token: each token gets the bits a one-token call
/// gives it. With more than one group, a claim is taken in pieces of `DECODE_PIECE_BYTES` that
/// every group reads while they are in cache.
fn decode(
    pool: &ThreadPool,
    parts: &[Option<Part>],
    total_rows: usize,
    total_bytes: usize,
    acts: DecodeActs,
) {
    let nt = pool.n_threads();
    // `next` is the first unclaimed row of the sequence.
    let next = AtomicUsize::new(0);
    let claim = || {
        let mut cur = next.load(Ordering::Relaxed);
        loop {
            if cur >= total_rows {
                return None;
            }
            let p = parts
                .iter()
                .flatten()
                .find(|p| cur < p.first_row + p.rows)
                .expect("cur < total_rows lies in some part");
            let r0 = cur - p.first_row;
            let left = total_bytes - (p.first_byte + r0 * p.wrb);
            let take = (left / nt)
                .max(DECODE_MIN_CHUNK_BYTES)
                .div_ceil(p.wrb.max(1));
            let r1 = (r0 + take.max(1)).min(p.rows);
            let end = p.first_row + r1;
            match next.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some((p, r0, r1)),
                Err(c) => cur = c,
            }
        }
    };
    // Tokens per group of a multi-token kernel, as even as they go.
    let n = acts.n;
    let group = n.div_ceil(n.div_ceil(GEMV_MULTI_MAX));
    pool.run(&|_, _| {
        // tmp: [GEMV_MULTI_MAX, MULTI_ROWS], a group's outputs before they go to the outputs
        // (not even zeroed for one token).
        let mut storage;
        let tmp: &mut [f32] = if n > 1 {
            storage = [0.0f32; GEMV_MULTI_MAX * MULTI_ROWS];
            &mut storage
        } else {
            &mut []
        };
        while let Some((p, r0, r1)) = claim() {
            let wrb = p.wrb;
            let multi = p.k.gemv_multi.filter(|_| n > 1);
            // Rows per piece: what all groups read while it is in cache (with one group, or
            // the multi-token kernel's buffer, at most MULTI_ROWS).
            let piece = match multi {
                Some(_) if n <= group => MULTI_ROWS,
                Some(_) => (DECODE_PIECE_BYTES / wrb.max(1)).clamp(1, MULTI_ROWS),
                None if n == 1 => r1 - r0,
                None => (DECODE_PIECE_BYTES / wrb.max(1)).max(1),
            };
            let mut q0 = r0;
            while q0 < r1 {
                let q1 = (q0 + piece).min(r1);
                let wq = Rows::new(&p.w[q0 * wrb..q1 * wrb], q1 - q0, wrb, wrb);
                let mut j = 0;
                while j < n {
                    let g = group.min(n - j);
                    match multi {
                        Some(m) if g > 1 => {
                            let at = Rows::new(&acts.a[j * acts.arb..], g, acts.arb, acts.arb);
                            m(p.n_cols, wq, at, RowsMut::new(tmp, g, q1 - q0, MULTI_ROWS));
                            for (i, o) in tmp.chunks_exact(MULTI_ROWS).take(g).enumerate() {
                                let row0 = (acts.t0 + j + i) * p.rows;
                                // SAFETY: token t0 + j + i < n_tok and q1 <= p.rows: elements
                                // q0..q1 of that token's output row are inside the part's
                                // output [n_tok, rows], claimed by this thread only, and do not
                                // overlap `tmp`.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        o.as_ptr(),
                                        p.out.0.add(row0 + q0),
                                        q1 - q0,
                                    )
                                };
                            }
                        }
                        _ => {
                            for t in j..j + g {
                                // SAFETY: rows q0..q1 of token t0 + t's output row (t0 + t <
                                // n_tok, q1 <= p.rows): claimed by this thread only, so written
                                // by no one else while `run` is active.
                                let o = unsafe {
                                    let row0 = (acts.t0 + t) * p.rows;
                                    std::slice::from_raw_parts_mut(p.out.0.add(row0 + q0), q1 - q0)
                                };
                                decode_rows(p.k, p.n_cols, wq, acts.row(t), o);
                            }
                        }
                    }
                    j += g;
                }
                q0 = q1;
            }
        }
    });
}

/// Shared checks for `GemmTileFn` implementations: the views hold rows of `n` elements of the
/// weight type `ty` and of its activation type `act_ty`, block-aligned, and one output per
/// (row, token).
#[allow(dead_code)] // used by the tile kernels of the ISA modules (none on some targets)
pub(crate) fn check_tile_args(
    ty: GgmlType,
    act_ty: GgmlType,
    n: usize,
    w: &Rows<u8>,
    a: &Rows<u8>,
    out: &RowsMut<f32>,
) {
    let (wrb, arb) = (row_bytes(ty, n), row_bytes(act_ty, n));
    assert!(
        w.row_len() == wrb && a.row_len() == arb,
        "tile rows of {}/{} bytes for {wrb}/{arb}",
        w.row_len(),
        a.row_len()
    );
    assert!(
        w.stride() % block_align(ty) == 0 && a.stride() % block_align(act_ty) == 0,
        "tile strides must keep blocks aligned"
    );
    assert!(
        out.n() == a.n() && out.row_len() == w.n(),
        "tile output: {}x{} for {} tokens x {} rows",
        out.n(),
        out.row_len(),
        a.n(),
        w.n()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::scalar_kernels;
    use crate::testing::lcg_values;

    /// Quantizes w_f32: [n_rows, n_cols] into `ty` with the table's reference quantizer.
    fn quantize_matrix(
        table: &KernelTable,
        ty: GgmlType,
        w: &[f32],
        n_rows: usize,
        n_cols: usize,
    ) -> Vec<u8> {
        let rb = row_bytes(ty, n_cols);
        let q = table.get(ty).unwrap().quantize_row_ref.unwrap();
        let mut out = vec![0u8; rb * n_rows];
        for (r, o) in w.chunks_exact(n_cols).zip(out.chunks_exact_mut(rb)) {
            q(r, o);
        }
        out
    }

    /// Naive f32 reference: y[t][r] = sum_c dequant(W)[r][c] * x[t][c], in f64.
    fn reference(table: &KernelTable, w: &MatRef, x: &[f32], n_tok: usize) -> Vec<f32> {
        let deq = table.get(w.ty).unwrap().dequantize_row.unwrap();
        let rb = w.row_bytes();
        let mut wf = vec![0.0f32; w.n_cols];
        let mut y = vec![0.0f32; n_tok * w.n_rows];
        for r in 0..w.n_rows {
            deq(&w.data[r * rb..(r + 1) * rb], &mut wf);
            for t in 0..n_tok {
                let xr = &x[t * w.n_cols..(t + 1) * w.n_cols];
                y[t * w.n_rows + r] = wf
                    .iter()
                    .zip(xr)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>() as f32;
            }
        }
        y
    }

    fn check_type(table: &KernelTable, ty: GgmlType, n_rows: usize, n_cols: usize, n_tok: usize) {
        let wf = lcg_values(n_rows * n_cols, 7 + ty.id() as u64);
        let x = lcg_values(n_tok * n_cols, 99);
        let data = quantize_matrix(scalar_kernels(), ty, &wf, n_rows, n_cols);
        let w = MatRef::new(ty, &data, n_rows, n_cols);
        let want = reference(scalar_kernels(), &w, &x, n_tok);
        let mut acts = ActBuf::with_capacity(n_cols, n_tok);
        let mut first: Option<Vec<f32>> = None;
        for threads in 1..=3 {
            let pool = ThreadPool::new(threads);
            let mut y = vec![f32::NAN; n_tok * n_rows];
            matmul_with(table, &pool, &w, &x, n_tok, &mut y, &mut acts);
            // The activation quantization error dominates: |x| < 1, q8 step <= 1/127 per element.
            let tol = 0.02 * (n_cols as f32).sqrt();
            for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= tol,
                    "{ty} {n_rows}x{n_cols} t={n_tok}: y[{i}] = {g}, want {e}"
                );
            }
            match &first {
                None => first = Some(y),
                Some(f) => {
                    let same = f.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{ty}: output with {threads} threads differs from 1 thread"
                    );
                }
            }
        }
    }

    #[test]
    fn matmul_matches_reference_and_is_thread_count_invariant() {
        for table in [scalar_kernels(), kernels()] {
            for ty in [
                GgmlType::Q4_0,
                GgmlType::Q8_0,
                GgmlType::Q4_1,
                GgmlType::Q5_0,
                GgmlType::F32,
                GgmlType::F16,
            ] {
                for &(n_rows, n_tok) in &[(1, 1), (37, 1), (300, 1), (37, 5), (40, 19)] {
                    check_type(table, ty, n_rows, 256, n_tok);
                }
            }
        }
    }

    /// Mixed calls (continuous batching): the decode tokens `n_tile..` of a call get exactly
    /// the bits a one-token call gives each of them alone, for 1 to 7 decode tokens (one or
    /// two groups of the multi-token kernels), after 0 or 3 tile tokens, with 1-3 threads, for
    /// the formats with multi-token kernels and one without (Q5_1 on AVX-512).
    #[test]
    fn mixed_decode_tokens_match_one_token_calls() {
        let table = kernels();
        let n_cols = 576; // 18 blocks: a partial last quad
        let n_rows = 300;
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let n_cols = if ty.block_elems() == 256 { 512 } else { n_cols };
            let wf = lcg_values(n_rows * n_cols, 21 + ty.id() as u64);
            let data = quantize_matrix(scalar_kernels(), ty, &wf, n_rows, n_cols);
            let w = MatRef::new(ty, &data, n_rows, n_cols);
            let vdt = table.get(ty).unwrap().vec_dot_type;
            for n_tile in [0usize, 3] {
                for n_dec in 1..=7 {
                    let n_tok = n_tile + n_dec;
                    let x = lcg_values(n_tok * n_cols, 5 + n_dec as u64);
                    let mut acts = ActBuf::with_capacity(n_cols, n_tok);
                    acts.quantize_with(table, vdt, &x, n_tok, n_cols);
                    for threads in 1..=3 {
                        let pool = ThreadPool::new(threads);
                        let mut y = vec![f32::NAN; n_tok * n_rows];
                        matmul_q_mixed_with(table, &pool, &w, &acts, &mut y, n_tile);
                        for t in n_tile..n_tok {
                            let mut one = ActBuf::with_capacity(n_cols, 1);
                            one.quantize_with(
                                table,
                                vdt,
                                &x[t * n_cols..(t + 1) * n_cols],
                                1,
                                n_cols,
                            );
                            let mut want = vec![f32::NAN; n_rows];
                            matmul_q_with(table, &pool, &w, &one, &mut want);
                            let got = &y[t * n_rows..(t + 1) * n_rows];
                            assert!(
                                got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{ty}: decode token {t} of {n_tok} (tiles {n_tile}, {threads} threads) differs from its one-token call"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Fused decode mat-vecs give each matrix exactly what its own call gives, for 1-3 threads:
    /// Q4_K, Q6_K and Q4_K matrices of different heights (Q, K, V of a Q4_K_M file, whose V may
    /// be Q6_K), one of them with no rows, and a single big one (claims that cross matrices).
    #[test]
    fn fused_decode_matches_separate_calls() {
        let n_cols = 512;
        let shapes = [
            (GgmlType::Q4_K, 300),
            (GgmlType::Q6_K, 37),
            (GgmlType::Q4_K, 0),
            (GgmlType::Q4_K, 64),
        ];
        let data: Vec<Vec<u8>> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(ty, rows))| {
                let wf = lcg_values(rows * n_cols, 11 + i as u64);
                quantize_matrix(scalar_kernels(), ty, &wf, rows, n_cols)
            })
            .collect();
        let mats: Vec<MatRef> = shapes
            .iter()
            .zip(&data)
            .map(|(&(ty, n_rows), d)| MatRef::new(ty, d, n_rows, n_cols))
            .collect();
        let x = lcg_values(n_cols, 3);
        for table in [scalar_kernels(), kernels()] {
            let mut acts = ActBuf::with_capacity(n_cols, 1);
            acts.quantize_with(table, GgmlType::Q8_K, &x, 1, n_cols);
            for threads in 1..=3 {
                let pool = ThreadPool::new(threads);
                let want: Vec<Vec<f32>> = mats
                    .iter()
                    .map(|w| {
                        let mut y = vec![f32::NAN; w.n_rows];
                        matmul_q_with(table, &ThreadPool::new(1), w, &acts, &mut y);
                        y
                    })
                    .collect();
                let mut got: Vec<Vec<f32>> =
                    mats.iter().map(|w| vec![f32::NAN; w.n_rows]).collect();
                {
                    let mut jobs: Vec<(MatRef, &mut [f32])> = mats
                        .iter()
                        .copied()
                        .zip(got.iter_mut().map(|y| y.as_mut_slice()))
                        .collect();
                    matmul_q_many_with(table, &pool, &mut jobs, &acts);
                }
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    let same = g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "matrix {j} ({threads} threads): fused {g:?} vs alone {w:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn act_buf_quantizes_like_from_float_and_reuses_storage() {
        let x = lcg_values(3 * 64, 5);
        let mut acts = ActBuf::with_capacity(64, 3);
        let cap = acts.buf.capacity();
        acts.quantize_with(scalar_kernels(), GgmlType::Q8_0, &x, 3, 64);
        assert_eq!(acts.row_bytes(), 68);
        let mut want = vec![0u8; 68];
        (scalar_kernels()
            .get(GgmlType::Q8_0)
            .unwrap()
            .from_float
            .unwrap())(&x[64..128], &mut want);
        assert_eq!(acts.row(1), &want[..]);
        acts.quantize_with(scalar_kernels(), GgmlType::F32, &x, 3, 64);
        assert_eq!(acts.bytes().len(), 3 * 64 * 4);
        assert_eq!(acts.buf.capacity(), cap);
    }

    /// Counts allocations made by the current thread (the test's own thread only, so tests running
    /// in parallel do not disturb it).
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Counting;

        thread_local! {
            pub static ALLOCS: Cell<usize> = const { Cell::new(0) };
        }

        // SAFETY: forwards every call to `System`, only counting on the side.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
                // SAFETY: same contract as ours.
                unsafe { System.alloc(layout) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: same contract as ours.
                unsafe { System.dealloc(ptr, layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
                // SAFETY: same contract as ours.
                unsafe { System.realloc(ptr, layout, new_size) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    }

    #[test]
    fn warm_matmul_does_not_allocate_on_the_calling_thread() {
        let (n_rows, n_cols) = (64, 256);
        let before = counting::ALLOCS.with(|c| c.get());
        let wf = lcg_values(n_rows * n_cols, 1);
        assert!(
            counting::ALLOCS.with(|c| c.get()) > before,
            "the counting allocator must see allocations"
        );
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads);
            for ty in [GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::F16] {
                let data = quantize_matrix(scalar_kernels(), ty, &wf, n_rows, n_cols);
                let w = MatRef::new(ty, &data, n_rows, n_cols);
                for n_tok in [1usize, 5] {
                    let x = lcg_values(n_tok * n_cols, 2);
                    let mut y = vec![0.0f32; n_tok * n_rows];
                    let mut acts = ActBuf::with_capacity(n_cols, 8);
                    matmul_with(kernels(), &pool, &w, &x, n_tok, &mut y, &mut acts); // warm-up
                    let before = counting::ALLOCS.with(|c| c.get());
                    for _ in 0..3 {
                        matmul_with(kernels(), &pool, &w, &x, n_tok, &mut y, &mut acts);
                    }
                    let after = counting::ALLOCS.with(|c| c.get());
                    assert_eq!(
                        after - before,
                        0,
                        "{ty} n_tok={n_tok} threads={threads}: matmul allocated"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "activations are Q8_1 but Q4_0 weights dot with Q8_0")]
    fn wrong_activation_type_is_a_clear_panic() {
        let data = vec![0u8; 18];
        let w = MatRef::new(GgmlType::Q4_0, &data, 1, 32);
        let mut acts = ActBuf::with_capacity(32, 1);
        acts.quantize_with(scalar_kernels(), GgmlType::Q8_1, &[0.0; 32], 1, 32);
        let mut y = [0.0f32; 1];
        matmul_q_with(scalar_kernels(), &ThreadPool::new(1), &w, &acts, &mut y);
    }
}
