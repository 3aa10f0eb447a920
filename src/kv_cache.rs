//! The KV cache: allocated once when a context is created, written in place by the forward pass.
//!
//! Layout per layer: keys `[n_head_kv, n_ctx, head_dim]` in the cache type, so one head's keys for
//! consecutive positions are contiguous rows (q·k is one dot per position). Values of an F16/F32
//! cache are stored transposed, `[n_head_kv, head_dim, n_ctx]` (as llama.cpp does without flash
//! attention), so the weighted sum over positions is one contiguous dot per value dimension; a
//! quantized cache (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: llama.cpp's `-ctk`/`-ctv` types) keeps values as
//! rows (blocks run along head_dim), `[n_head_kv, n_ctx, head_dim]`.

use std::ops::Range;

use ferrolm_kernels::dispatch::KernelTable;
use ferrolm_kernels::views::Rows;
use ferrolm_kernels::GgmlType;

/// Element type of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    F32,
    #[default]
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
}

impl KvType {
    pub fn ggml(self) -> GgmlType {
        match self {
            KvType::F32 => GgmlType::F32,
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
            KvType::Q4_0 => GgmlType::Q4_0,
            KvType::Q4_1 => GgmlType::Q4_1,
            KvType::Q5_0 => GgmlType::Q5_0,
            KvType::Q5_1 => GgmlType::Q5_1,
        }
    }

    /// Every type, in the order `--cache-type`'s help lists them.
    pub const ALL: [KvType; 7] = [
        KvType::F16,
        KvType::F32,
        KvType::Q8_0,
        KvType::Q4_0,
        KvType::Q4_1,
        KvType::Q5_0,
        KvType::Q5_1,
    ];

    pub fn parse(s: &str) -> Option<KvType> {
        let s = s.to_ascii_lowercase();
        KvType::ALL.into_iter().find(|t| t.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
            KvType::Q4_1 => "q4_1",
            KvType::Q5_0 => "q5_0",
            KvType::Q5_1 => "q5_1",
        }
    }

    /// A block-quantized type (values stored as rows, written through a quantizer).
    pub fn is_quantized(self) -> bool {
        !matches!(self, KvType::F32 | KvType::F16)
    }
}

/// Keys and values for every layer, head and position of one context.
pub struct KvCache {
    ty: KvType,
    n_layer: usize,
    n_ctx: usize,
    n_head_kv: usize,
    head_dim: usize,
    /// Bytes of one row (one head at one position).
    row_bytes: usize,
    /// K then V for layer 0, then layer 1, ...; u64 storage keeps rows aligned for any cache type.
    buf: Vec<u64>,
    /// Values stored one row per position even for F16/F32 (the flash-attention layout).
    value_rows: bool,
}

/// Which half of a layer's cache: the keys or the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kv {
    K = 0,
    V = 1,
}

/// Why a KV cache cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error(
        "a {ty} KV cache needs the head dimension ({head_dim}) to be a multiple of its block size \
         ({block})"
    )]
    HeadDim {
        ty: &'static str,
        head_dim: usize,
        block: usize,
    },
    #[error(
        "a KV cache of {n_layer} layers x {n_ctx} positions x {n_head_kv} heads x {head_dim} \
         dimensions is too large to address"
    )]
    TooLarge {
        n_layer: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    },
}

impl KvCache {
    /// Bytes a cache of this shape takes.
    pub fn bytes_needed(
        ty: KvType,
        n_layer: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Option<usize> {
        let row = ty.ggml().row_bytes(head_dim as u64)? as usize;
        row.checked_mul(n_ctx)?
            .checked_mul(n_head_kv)?
            .checked_mul(n_layer)?
            .checked_mul(2)
    }

    /// Allocate the whole cache now (zeroed; the OS maps pages as they are first written).
    /// `head_dim` must be a whole number of blocks of the cache type (32 for Q8_0).
    pub fn new(
        ty: KvType,
        n_layer: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> Result<KvCache, KvError> {
        let block = ty.ggml().block_elems();
        let row_bytes = match ty.ggml().row_bytes(head_dim as u64) {
            Some(r) if r % 2 == 0 => r as usize,
            _ => {
                return Err(KvError::HeadDim {
                    ty: ty.name(),
                    head_dim,
                    block,
                })
            }
        };
        let total = Self::bytes_needed(ty, n_layer, n_ctx, n_head_kv, head_dim).ok_or(
            KvError::TooLarge {
                n_layer,
                n_ctx,
                n_head_kv,
                head_dim,
            },
        )?;
        let buf = vec![0u64; total.div_ceil(8)];
        Ok(KvCache {
            ty,
            n_layer,
            n_ctx,
            n_head_kv,
            head_dim,
            row_bytes,
            buf,
            value_rows: false,
        })
    }

    /// The same cache with values stored one row per position, as keys are, for every type
    /// (what flash attention reads); by default F16/F32 values are stored transposed.
    pub fn with_value_rows(mut self) -> KvCache {
        self.value_rows = true;
        self
    }

    /// Switches the value layout (rows when `rows`, else the type's default). What the cache
    /// holds is not converted: only for a cache that holds nothing yet.
    pub(crate) fn set_value_rows(&mut self, rows: bool) {
        self.value_rows = rows;
    }

    pub fn ty(&self) -> KvType {
        self.ty
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// Total bytes allocated.
    pub fn size_bytes(&self) -> usize {
        self.buf.len() * 8
    }

    /// Address of the storage (tests check it never moves).
    pub fn storage_ptr(&self) -> *const u8 {
        self.buf.as_ptr() as *const u8
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: u64 storage reinterpreted as bytes: fully initialized, alignment 1 ≤ 8, same length.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.buf.len() * 8) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; any byte pattern is a valid u64.
        unsafe {
            std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut u8, self.buf.len() * 8)
        }
    }

    /// The byte spans holding positions 0..n, in a fixed order (per layer, keys then values,
    /// per head: one span of n rows, or for transposed values one span per dimension): what a
    /// state file stores.
    fn spans(&self, n: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        assert!(
            n <= self.n_ctx,
            "{n} positions exceed the cache's {}",
            self.n_ctx
        );
        let es = self.elem_bytes();
        (0..self.n_layer).flat_map(move |l| {
            [Kv::K, Kv::V].into_iter().flat_map(move |kv| {
                (0..self.n_head_kv).flat_map(move |h| {
                    let o = self.offset(l, kv, h, 0);
                    let transposed = kv == Kv::V && self.v_transposed();
                    let (count, len, stride) = if transposed {
                        (self.head_dim, n * es, self.n_ctx * es)
                    } else {
                        (1, n * self.row_bytes, 0)
                    };
                    (0..count).map(move |d| o + d * stride..o + d * stride + len)
                })
            })
        })
    }

    /// Bytes of positions 0..n over all layers and heads.
    pub fn span_bytes(&self, n: usize) -> usize {
        self.spans(n).map(|r| r.len()).sum()
    }

    /// Calls `f` with each span of positions 0..n (see `spans`).
    pub fn for_each_span(&self, n: usize, mut f: impl FnMut(&[u8])) {
        let b = self.bytes();
        for r in self.spans(n) {
            f(&b[r]);
        }
    }

    /// Calls `f` with each span of positions 0..n, writable.
    pub fn for_each_span_mut(&mut self, n: usize, mut f: impl FnMut(&mut [u8])) {
        let spans: Vec<_> = self.spans(n).collect();
        let b = self.bytes_mut();
        for r in spans {
            f(&mut b[r]);
        }
    }

    /// Byte offset of (layer, keys or values, head, pos).
    #[inline]
    fn offset(&self, layer: usize, kv: Kv, head: usize, pos: usize) -> usize {
        debug_assert!(layer < self.n_layer && head < self.n_head_kv && pos <= self.n_ctx);
        (((layer * 2 + kv as usize) * self.n_head_kv + head) * self.n_ctx + pos) * self.row_bytes
    }

    /// True when values are stored transposed (`[head_dim, n_ctx]` per head): F16 and F32 caches.
    #[inline]
    pub fn v_transposed(&self) -> bool {
        !self.ty.is_quantized() && !self.value_rows
    }

    /// Bytes of one element (F16/F32 caches).
    #[inline]
    fn elem_bytes(&self) -> usize {
        match self.ty {
            KvType::F32 => 4,
            KvType::F16 => 2,
            _ => 0,
        }
    }

    /// Transposed values of one head, positions `pos` of every dimension at once: row d of the
    /// view is dimension d's values there (`head_dim` rows of `pos.len() * elem_bytes` bytes).
    #[inline]
    pub fn v_columns(&self, layer: usize, head: usize, pos: Range<usize>) -> Rows<'_, u8> {
        assert!(
            self.v_transposed()
                && pos.start <= pos.end
                && pos.end <= self.n_ctx
                && self.head_dim > 0,
            "bad transposed-V read"
        );
        let es = self.elem_bytes();
        let o = self.offset(layer, Kv::V, head, 0) + pos.start * es;
        Rows::new(
            &self.bytes()[o..],
            self.head_dim,
            pos.len() * es,
            self.n_ctx * es,
        )
    }

    /// Rows `pos` of one head's keys or, for a quantized cache, values: `[pos.len(), head_dim]` in the
    /// cache type.
    #[inline]
    pub fn rows(&self, layer: usize, kv: Kv, head: usize, pos: Range<usize>) -> &[u8] {
        assert!(
            pos.start <= pos.end && pos.end <= self.n_ctx,
            "positions {pos:?} exceed the cache's {}",
            self.n_ctx
        );
        let o = self.offset(layer, kv, head, pos.start);
        &self.bytes()[o..o + pos.len() * self.row_bytes]
    }

    /// Store one head's key or value at `pos`, converting from f32.
    pub fn store(
        &mut self,
        table: &KernelTable,
        layer: usize,
        kv: Kv,
        head: usize,
        pos: usize,
        x: &[f32],
    ) {
        assert!(
            pos < self.n_ctx && x.len() == self.head_dim,
            "cache write out of range"
        );
        if kv == Kv::V && self.v_transposed() {
            let es = self.elem_bytes();
            let base = self.offset(layer, Kv::V, head, 0);
            let n_ctx = self.n_ctx;
            let f16 = self.ty == KvType::F16;
            let bytes = self.bytes_mut();
            if f16 {
                // The head converted at once (F16C / fcvt when present, as for rows), then
                // scattered: one element per dimension row, n_ctx elements apart.
                use half::slice::HalfFloatSliceExt;
                let mut h = [half::f16::ZERO; 64];
                for (k, xs) in x.chunks(h.len()).enumerate() {
                    let h = &mut h[..xs.len()];
                    h.convert_from_f32_slice(xs);
                    for (i, v) in h.iter().enumerate() {
                        let o = base + ((k * 64 + i) * n_ctx + pos) * es;
                        bytes[o..o + 2].copy_from_slice(&v.to_le_bytes());
                    }
                }
            } else {
                for (d, &v) in x.iter().enumerate() {
                    let o = base + (d * n_ctx + pos) * es;
                    bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            return;
        }
        let o = self.offset(layer, kv, head, pos);
        let rb = self.row_bytes;
        let ty = self.ty;
        let dst = &mut self.bytes_mut()[o..o + rb];
        match ty {
            KvType::F32 => {
                for (d, v) in dst.chunks_exact_mut(4).zip(x) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            KvType::F16 => {
                use half::slice::HalfFloatSliceExt;
                // F16C (x86) / fcvt (aarch64) when present, chosen at run time by `half`.
                ferrolm_kernels::cast_blocks_mut::<half::f16>(dst).convert_from_f32_slice(x);
            }
            ty => {
                // llama.cpp quantizes cache rows with the type's `from_float` (the reference
                // quantizer for the weight formats).
                let q = table
                    .get(ty.ggml())
                    .and_then(|k| k.from_float.or(k.quantize_row_ref))
                    .expect("the cache types have a quantizer in the table");
                q(x, dst);
            }
        }
    }
}
