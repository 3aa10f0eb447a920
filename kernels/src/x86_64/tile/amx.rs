//! Prefill tiles on AMX (Intel Sapphire Rapids and later Xeons), with `tdpbssd`, which multiplies
//! a tile of 16 tokens x K activation bytes by a tile of K x 16 weight levels (signed x signed)
//! into 16 x 16 exact i32 sums in one instruction. Every body's results are the same bits as the
//! AVX-512 tile's, which also takes the tokens left over after the groups of 16.
//!
//! The 32-element formats (Q4_0, Q5_0, Q8_0 x Q8_0; Q4_1, Q5_1 x Q8_1), K = 32: the weight tile is
//! what [`group512`](super::group512) holds in registers, 16 rows of one block unpacked and
//! transposed so that row j of the tile holds every row's elements 4j..4j + 4 (AMX's "VNNI"
//! layout of B); the activation tile is read in place (16 rows of 32 bytes at the tokens'
//! stride). Each block's 16 x 16 sums go through a 1 KiB buffer to `group512`'s float steps
//! (convert, times `d_w * d_a`, plus `m_w * s_a`), in the same order. Tile registers: tmm0, tmm1 =
//! activations (16 x 32 bytes), tmm2, tmm3 = weights (8 x 64), tmm4..=tmm7 = sums (16 x 64).
//!
//! The k-quants (Q4_K, Q5_K, Q6_K, Q3_K, Q2_K x Q8_K), K = 64: the rows' integer scales go into
//! the weight tiles (`scale * level` split into two bytes, see [`amx_tile_k`]), so the tiles sum
//! a whole super-block before one store; the activations are packed per call into aligned tiles
//! ([`pack_acts`]). Tile registers: tmm0, tmm1 = activations (16 x 64 bytes), tmm2, tmm3 =
//! weights (16 x 64), tmm4..=tmm7 = sums.
//!
//! The tile instructions are written in `asm!`; the compiler neither uses nor clobbers the tile
//! registers, so their contents persist between the blocks below.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use super::{
    block_step512, k16_finish_token, k16_header16, k_finish_token, k_header16, k_min_pairs,
    store_groups16, store_rows16, transpose16, K16Block, K16Header16, KBlock, KHeader16, KTile,
    TileBlock, Unpacked, KC, MAX_GROUPS, MAX_NT,
};
use crate::blocks::{cast_blocks, ActBlock32, BlockQ8_K, QK, QK_K};
use crate::matmul::check_tile_args;
use crate::types::GgmlType;
use crate::views::{Rows, RowsMut};

/// True when the CPU has AMX-TILE and AMX-INT8 (CPUID leaf 7) and the kernel granted this process
/// the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, Linux 5.16+).
/// Checked once. Without the permission the tile instructions fault, so nothing runs them before.
pub(in crate::x86_64) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let l7 = __cpuid_count(7, 0);
        let (tile, int8) = (l7.edx & (1 << 24) != 0, l7.edx & (1 << 25) != 0);
        tile && int8 && super::super::has_avx512vnni() && request_tile_data()
    })
}

/// Asks Linux for the AMX tile data state; true when granted.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: the arch_prctl system call with two integer arguments; it reads and writes no user
    // memory for this request. `syscall` clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

/// Other systems: no AMX tiles (no way asked of them here).
#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// LDTILECFG's 64-byte operand, palette 1.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// A 64-byte aligned buffer (the weight tile's rows, or the 16 x 16 sums).
#[repr(C, align(64))]
struct Aligned<T>(T);

/// Loads a palette-1 tile configuration: tmm`i` has `shapes[i]` = (bytes per row, rows).
///
/// # Safety
/// [`available`] must be true; every shape at most 64 bytes x 16 rows.
#[inline(always)]
unsafe fn load_config(shapes: [(u16, u8); 8]) {
    let mut c = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [0; 16],
        rows: [0; 16],
    };
    for (i, (colsb, rows)) in shapes.into_iter().enumerate() {
        (c.colsb[i], c.rows[i]) = (colsb, rows);
    }
    // SAFETY: `c` is a valid 64-byte palette-1 configuration; the caller guarantees AMX.
    unsafe { asm!("ldtilecfg [{0}]", in(reg) &c, options(nostack, readonly)) };
}

/// Configures tmm0, tmm1 (16 x 32 bytes: activations), tmm2, tmm3 (8 x 64: weights) and tmm4..=tmm7
/// (16 x 64: sums).
///
/// # Safety
/// [`available`] must be true.
#[inline(always)]
unsafe fn configure() {
    let (act, wt, sum) = ((32, 16), (64, 8), (64, 16));
    // SAFETY: guaranteed by the caller; the shapes are within 64 bytes x 16 rows.
    unsafe { load_config([act, act, wt, wt, sum, sum, sum, sum]) };
}

/// Releases the tile state (so that a context switch need not save it).
///
/// # Safety
/// [`available`] must be true.
#[inline(always)]
unsafe fn release() {
    // SAFETY: the caller guarantees AMX.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// The tile entry point (`GemmTileFn`) of a 32-element format on AMX.
pub(in crate::x86_64) fn gemm_tile<W: TileBlock>(
    n: usize,
    w: Rows<u8>,
    a: Rows<u8>,
    out: RowsMut<f32>,
) {
    check_tile_args(W::TYPE, <W::Act as ActBlock32>::TYPE, n, &w, &a, &out);
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn imp<W: TileBlock>(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
        // SAFETY: this function is compiled with AVX-512 VNNI's features, and the kernel table
        // holds it only when `available()` (AMX granted).
        unsafe { amx_tile::<W>(n, w, a, out) }
    }
    assert!(available(), "AMX tile called without AMX");
    // SAFETY: reachable only through the kernel table, which `install` fills with this tile only
    // after detecting AVX-512 VNNI and AMX (checked again just above).
    unsafe { imp::<W>(n, w, a, out) }
}

/// The whole tile: groups of up to 64 rows x 128/64/32/16 tokens on AMX, the tokens left over
/// (fewer than 16) through the AVX-512 tile.
///
/// # Safety
/// AVX-512 VNNI and [`available`].
#[inline(always)]
unsafe fn amx_tile<W: TileBlock>(n: usize, w: Rows<u8>, a: Rows<u8>, mut out: RowsMut<f32>) {
    let nb = n / QK;
    let (nr, nt) = (w.n(), a.n());
    let n16 = nt / 16 * 16;
    if n16 > 0 && nr > 0 {
        // SAFETY: the caller guarantees AMX and AVX-512 VNNI.
        unsafe {
            configure();
            let row = |r: usize| -> &[W] { cast_blocks(w.row(r)) };
            let mut r0 = 0;
            while r0 < nr {
                let ng = (nr - r0).div_ceil(16).min(MAX_GROUPS / 2);
                let present = (nr - r0).min(16 * ng);
                let rows: [Option<&[W]>; 8 * MAX_GROUPS] =
                    std::array::from_fn(|i| (i < present).then(|| row(r0 + i)));
                let rows = &rows[..16 * ng];
                let mut t0 = 0;
                while t0 < n16 {
                    t0 += crate::dispatch::token_group!(n16 - t0, NT => {
                        group_amx::<W, NT>(rows, &a, t0, nb, out.window(t0, NT, r0, present))
                    }; 128, 64, 32, 16);
                }
                r0 += 16 * ng;
            }
            release();
        }
    }
    if n16 < nt {
        super::vnni::gemm_tile::<W>(n, w, a.rows(n16, nt - n16), out.rows_mut(n16, nt - n16));
    }
}

/// `act_scales` of block k of the 16 tokens `acts[first..first + 16]` as vectors (lane i: token
/// first + i; s zero without mins), by one gather of each block's first 4 bytes (d, and s of
/// Q8_1): the same conversions, 16 at a time.
///
/// # Safety
/// AVX-512 F/BW/VL and F16C.
#[inline(always)]
unsafe fn act_scales16<W: TileBlock, const NT: usize>(
    acts: &[&[W::Act]; NT],
    first: usize,
    k: usize,
    stride: usize,
) -> (__m512, __m512) {
    let b0 = &acts[first][k] as *const W::Act as *const u8;
    let b15 = &acts[first + 15][k] as *const W::Act as *const u8;
    // The gather reads 4 bytes at b0 + i * stride: block k of token first + i (the rows are
    // `stride` apart), at least 34 bytes long.
    assert!(b15 as usize == b0 as usize + 15 * stride && stride <= i32::MAX as usize / 16);
    // SAFETY: the addresses are inside the blocks (asserted); the caller guarantees the features.
    unsafe {
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let idx = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(stride as i32));
        let v = _mm512_i32gather_epi32::<1>(idx, b0 as *const i32);
        let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
        let s = if W::HAS_MIN {
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(v)))
        } else {
            _mm512_setzero_ps()
        };
        (d, s)
    }
}

/// How many blocks ahead [`group_amx`] prefetches each weight row.
const PF_AHEAD: usize = 8;

/// tmm2 (`par` 0) or tmm3 (1) = the weight tile: 8 rows of 64 bytes at `w`.
///
/// # Safety
/// Tiles configured by [`configure`]; `w` 512 readable bytes.
#[inline(always)]
unsafe fn load_weights(par: usize, w: *const __m512i) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        if par == 0 {
            asm!("tileloadd tmm2, [{p} + {s}*1]", p = in(reg) w, s = in(reg) 64usize,
                 options(nostack, readonly));
        } else {
            asm!("tileloadd tmm3, [{p} + {s}*1]", p = in(reg) w, s = in(reg) 64usize,
                 options(nostack, readonly));
        }
    }
}

/// [`tile_dot`] of token group `g` against the weight tile of parity `par` (tmm2 / tmm3), in the
/// rotation the pipelined bodies use: sum tiles tmm4..=tmm7 by `g % 4`, activation tiles tmm0 /
/// tmm1 by `g % 2`.
///
/// # Safety
/// As for [`tile_dot`], with that weight tile loaded.
#[inline(always)]
unsafe fn group_dot(g: usize, par: usize, a: *const i8, stride: usize, out: *mut i32) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match (g % 4, par) {
            (0, 0) => tile_dot::<4, 0, 2>(a, stride, out),
            (1, 0) => tile_dot::<5, 1, 2>(a, stride, out),
            (2, 0) => tile_dot::<6, 0, 2>(a, stride, out),
            (3, 0) => tile_dot::<7, 1, 2>(a, stride, out),
            (0, _) => tile_dot::<4, 0, 3>(a, stride, out),
            (1, _) => tile_dot::<5, 1, 3>(a, stride, out),
            (2, _) => tile_dot::<6, 0, 3>(a, stride, out),
            _ => tile_dot::<7, 1, 3>(a, stride, out),
        }
    }
}

/// One token group's product: tmm`C` = 0, tmm`A` = the activation tile (16 rows of 32 bytes at
/// `a`, `stride` apart), tmm`C` += tmm`A` x tmm`B` (`tdpbssd`), stored as 16 rows of 16 i32 at
/// `out`.
///
/// # Safety
/// Tiles configured by [`configure`]; tmm`B` loaded; the 16 activation rows readable; `out` 1 KiB
/// writable.
#[inline(always)]
unsafe fn tile_dot<const C: usize, const A: usize, const B: usize>(
    a: *const i8,
    stride: usize,
    out: *mut i32,
) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!(
            "tilezero tmm{c}",
            "tileloadd tmm{ar}, [{a} + {s}*1]",
            "tdpbssd tmm{c}, tmm{ar}, tmm{b}",
            "tilestored [{o} + {os}*1], tmm{c}",
            c = const C,
            ar = const A,
            b = const B,
            a = in(reg) a,
            s = in(reg) stride,
            o = in(reg) out,
            os = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// 16 x `ng` rows (`rows[r]`, `None` = padding) x tokens t0..t0 + NT of `a` (NT a multiple of 16),
/// all blocks; writes `out.row(t)[r]` for the rows present.
///
/// Software-pipelined: the tile products of block k (into four rotating sum tiles, two rotating
/// activation tiles and one of two weight tiles) are issued before the float steps of block
/// k - 1 read their sums, so that those reads do not wait for the tile stores just made.
///
/// # Safety
/// AVX-512 VNNI and [`available`], with the tiles configured by [`configure`].
#[inline(always)]
unsafe fn group_amx<W: TileBlock, const NT: usize>(
    rows: &[Option<&[W]>],
    a: &Rows<u8>,
    t0: usize,
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: the caller guarantees AVX-512 VNNI and configured AMX tiles; every memory access
    // below is bounds-checked, an aligned access to a local buffer of the size named beside it,
    // or a tile load of 16 rows of 32 bytes each inside an activation row (see below).
    unsafe {
        assert!(NT.is_multiple_of(16) && NT <= MAX_NT && rows.len().is_multiple_of(16));
        let np = rows.len() / 16;
        assert!(np <= MAX_GROUPS / 2);
        let acts: [&[W::Act]; NT] = std::array::from_fn(|i| cast_blocks(a.row(t0 + i)));
        let stride = a.stride();
        let mut accs = [[_mm512_setzero_ps(); NT]; MAX_GROUPS / 2];
        let zero = Unpacked {
            q: _mm256_setzero_si256(),
            d: 0.0,
            m: 0.0,
        };
        let mut da = [0.0f32; KC * MAX_NT];
        let mut sa = [0.0f32; KC * MAX_NT];
        // Two weight tiles (8 rows of 64 bytes each) and two sets of sums (token group g: 16
        // tokens x 16 rows of i32), one per block parity.
        let mut wt = Aligned([[_mm512_setzero_si512(); 8]; 2]);
        // Not zeroed: every sum is written by a tile store before it is read.
        let mut sums = MaybeUninit::<Aligned<[[[[i32; 16]; 16]; MAX_NT / 16]; 2]>>::uninit();
        let sp = sums.as_mut_ptr() as *mut i32;
        // Row i of the sums of token group g, block parity `par`.
        let at = |par: usize, g: usize, i: usize| sp.add(((par * (MAX_NT / 16) + g) * 16 + i) * 16);
        let mut k0 = 0;
        while k0 < nb {
            let kn = KC.min(nb - k0);
            for kk in 0..kn {
                for g in 0..NT / 16 {
                    let x = kk * NT + 16 * g;
                    let (d16, s16) = act_scales16::<W, NT>(&acts, 16 * g, k0 + kk, stride);
                    assert!(x + 16 <= da.len());
                    // da and sa have 16 writable floats at x (asserted); unaligned stores.
                    _mm512_storeu_ps(da.as_mut_ptr().add(x), d16);
                    _mm512_storeu_ps(sa.as_mut_ptr().add(x), s16);
                }
            }
            for (p, acc) in accs[..np].iter_mut().enumerate() {
                // The scale and min vectors of the block whose float steps are pending.
                let mut dm = [(_mm512_setzero_ps(), _mm512_setzero_ps()); 2];
                for kk in 0..=kn {
                    if kk < kn {
                        let k = k0 + kk;
                        let par = kk % 2;
                        let mut u = [zero; 16];
                        let mut q = [_mm256_setzero_si256(); 16];
                        for r in 0..16 {
                            if let Some(b) = rows[16 * p + r] {
                                u[r] = b[k].unpack();
                                q[r] = u[r].q;
                                // The row's block PF_AHEAD ahead, towards L1 (16 row streams at
                                // once are more than the hardware prefetchers follow).
                                if let Some(next) = b.get(k + PF_AHEAD) {
                                    _mm_prefetch::<_MM_HINT_T0>(next as *const W as *const i8);
                                }
                            }
                        }
                        wt.0[par] = transpose16(&q);
                        let mut dl = [0.0f32; 16];
                        let mut ml = [0.0f32; 16];
                        for r in 0..16 {
                            dl[r] = u[r].d;
                            ml[r] = u[r].m;
                        }
                        // dl and ml are 16 readable floats; unaligned loads.
                        dm[par] = (_mm512_loadu_ps(dl.as_ptr()), _mm512_loadu_ps(ml.as_ptr()));
                        // tmm2 / tmm3 = the weight tile: 8 rows of 64 bytes at `wt.0[par]`.
                        let wp = wt.0[par].as_ptr();
                        load_weights(par, wp);
                        for g in 0..NT / 16 {
                            // Row i of the activation tile = the 32 level bytes of block k of
                            // token t0 + 16g + i, at the activation rows' stride: each lies inside
                            // its block (`qs`), which `acts` bounds-checked.
                            let first = acts[16 * g][k].qs().as_ptr();
                            debug_assert_eq!(
                                acts[16 * g + 15][k].qs().as_ptr() as usize,
                                first as usize + 15 * stride
                            );
                            group_dot(g, par, first, stride, at(par, g, 0));
                        }
                    }
                    if kk == 0 {
                        continue;
                    }
                    // The float steps of block kk - 1.
                    let (j, par) = (kk - 1, (kk - 1) % 2);
                    let (d, m) = dm[par];
                    for g in 0..NT / 16 {
                        for i in 0..16 {
                            let t = 16 * g + i;
                            // A row of sums is 16 aligned i32 (64-byte aligned rows).
                            let s = _mm512_load_si512(at(par, g, i) as *const __m512i);
                            let (x, a) = (j * NT + t, acc[t]);
                            acc[t] = block_step512::<W>(a, s, d, m, da[x], sa[x]);
                        }
                    }
                }
            }
            k0 += kn;
        }
        store_groups16(&accs[..np], out);
    }
}

/// The tile entry point (`GemmTileFn`) of Q4_K/Q5_K (x Q8_K) on AMX: see [`amx_tile_k`].
pub(in crate::x86_64) fn gemm_tile_k<W: KBlock + KTile>(
    n: usize,
    w: Rows<u8>,
    a: Rows<u8>,
    out: RowsMut<f32>,
) {
    gemm_amx_k::<K32<W>>(n, w, a, out)
}

/// The tile entry point (`GemmTileFn`) of Q6_K/Q3_K/Q2_K (x Q8_K) on AMX: see [`amx_tile_k`].
pub(in crate::x86_64) fn gemm_tile_k16<W: K16Block + KTile>(
    n: usize,
    w: Rows<u8>,
    a: Rows<u8>,
    out: RowsMut<f32>,
) {
    gemm_amx_k::<K16<W>>(n, w, a, out)
}

fn gemm_amx_k<K: AmxK>(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
    check_tile_args(<K::W as KTile>::TYPE, GgmlType::Q8_K, n, &w, &a, &out);
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn imp<K: AmxK>(n: usize, w: Rows<u8>, a: Rows<u8>, out: RowsMut<f32>) {
        // SAFETY: as in `gemm_tile`.
        unsafe { amx_tile_k::<K>(n, w, a, out) }
    }
    assert!(available(), "AMX tile called without AMX");
    // SAFETY: as in `gemm_tile`.
    unsafe { imp::<K>(n, w, a, out) }
}

/// A k-quant as the AMX tile reads it: element i of a super-block is `d * scale(i) * (u_i -
/// OFFSET)` (minus a min term that [`AmxK::finish`] takes from the activations' sums), with
/// unsigned stored levels u and signed or unsigned byte scales, |scale * (u - OFFSET)| <= 4096.
trait AmxK {
    /// The block; also the AVX-512 tile's, which takes the tokens left over.
    type W: KTile;
    /// A super-block of 16 rows' scales, mins and `d`s, per lane.
    type H: Copy;
    const OFFSET: i16;
    /// The header of super-block `k` of `rows` (`None` = padding: zeros).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL and VNNI.
    unsafe fn header(rows: &[Option<&[Self::W]>; 16], k: usize) -> Self::H;
    /// Lane r: row r's scale (an i32) of elements 32s + 4j..32s + 4j + 4 (j < 8).
    fn scale(h: &Self::H, s: usize, j: usize) -> __m512i;
    /// The 32 levels of elements 32s..32s + 32 of `b`.
    ///
    /// # Safety
    /// AVX2.
    unsafe fn levels(b: &Self::W, s: usize) -> __m256i;
    /// [`pack_acts`] stores each token's min pairs ([`k_min_pairs`]) for [`AmxK::finish`].
    const MIN_PAIRS: bool;
    /// One token's float steps of a super-block, as the AVX-512 tile takes them: `acc` plus
    /// the exact scaled sum `isum` and the mins; `pairs` the token's min pairs (with
    /// `MIN_PAIRS`).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL and VNNI; with `MIN_PAIRS`, 16 readable bytes at `pairs`.
    unsafe fn finish(
        h: &Self::H,
        a: &BlockQ8_K,
        pairs: *const u8,
        isum: __m512i,
        acc: __m512,
    ) -> __m512;
}

/// Q4_K/Q5_K: a scale per 32 elements.
struct K32<W>(PhantomData<W>);

impl<W: KBlock + KTile> AmxK for K32<W> {
    type W = W;
    type H = KHeader16;
    const OFFSET: i16 = 0;
    #[inline(always)]
    unsafe fn header(rows: &[Option<&[W]>; 16], k: usize) -> KHeader16 {
        // SAFETY: forwarded from the caller.
        unsafe { k_header16(rows, k) }
    }
    #[inline(always)]
    fn scale(h: &KHeader16, s: usize, _j: usize) -> __m512i {
        h.sc[s]
    }
    #[inline(always)]
    unsafe fn levels(b: &W, s: usize) -> __m256i {
        <W as KBlock>::levels(b, s)
    }
    const MIN_PAIRS: bool = true;
    #[inline(always)]
    unsafe fn finish(
        h: &KHeader16,
        a: &BlockQ8_K,
        pairs: *const u8,
        isum: __m512i,
        acc: __m512,
    ) -> __m512 {
        // SAFETY: forwarded from the caller (an unaligned read of the pairs).
        unsafe {
            let bp = (pairs as *const [i32; 4]).read_unaligned();
            k_finish_token(h, &bp, a.d, isum, acc)
        }
    }
}

/// Q6_K/Q3_K/Q2_K: a scale per 16 elements.
struct K16<W>(PhantomData<W>);

impl<W: K16Block + KTile> AmxK for K16<W> {
    type W = W;
    type H = K16Header16;
    const OFFSET: i16 = W::OFFSET as i16;
    #[inline(always)]
    unsafe fn header(rows: &[Option<&[W]>; 16], k: usize) -> K16Header16 {
        // SAFETY: forwarded from the caller.
        unsafe { k16_header16(rows, k) }
    }
    #[inline(always)]
    fn scale(h: &K16Header16, s: usize, j: usize) -> __m512i {
        h.sc[2 * s + j / 4]
    }
    #[inline(always)]
    unsafe fn levels(b: &W, s: usize) -> __m256i {
        // SAFETY: forwarded from the caller.
        unsafe { <W as K16Block>::levels(b, s) }
    }
    const MIN_PAIRS: bool = false;
    #[inline(always)]
    unsafe fn finish(
        h: &K16Header16,
        a: &BlockQ8_K,
        _pairs: *const u8,
        isum: __m512i,
        acc: __m512,
    ) -> __m512 {
        // SAFETY: forwarded from the caller.
        unsafe { k16_finish_token::<W>(h, a, isum, acc) }
    }
}

/// The whole k-quant tile: groups of 16 rows x 128/64/32/16 tokens on AMX, the tokens left over
/// through the AVX-512 tile.
///
/// The rows' scales go into the weight tiles: each level's `scale * (u - OFFSET)` (at most 4096
/// in magnitude) is split as `64 h + l` (h = floor(w / 64) in -64..=64, l in 0..64, both bytes),
/// and two `tdpbssd` chains per 16 tokens x 16 rows sum `h` and `l` against the activations over
/// the whole super-block, 64 elements per instruction. `64 H + L` is then the super-block's
/// exact scaled sum, the same i32 the AVX-512 bodies ([`group_k512`](super::group_k512),
/// [`group_k16_512`](super::group_k16_512)) get, and the float steps are theirs: the same bits.
///
/// # Safety
/// AVX-512 VNNI and [`available`].
#[inline(always)]
unsafe fn amx_tile_k<K: AmxK>(n: usize, w: Rows<u8>, a: Rows<u8>, mut out: RowsMut<f32>) {
    let nb = n / QK_K;
    let (nr, nt) = (w.n(), a.n());
    let n16 = nt / 16 * 16;
    if n16 > 0 && nr > 0 {
        // SAFETY: the caller guarantees AMX and AVX-512 VNNI.
        unsafe {
            configure_k();
            // The thread's buffer is taken out for the call and put back after it (the body
            // stays outside a closure, which would not inherit this function's features).
            let mut buf = PACKED.with(RefCell::take);
            let need = (n16 / 16) * nb * PACK_UNIT / 64;
            if buf.len() < need {
                buf.resize(need, _mm512_setzero_si512());
            }
            let pp = buf.as_mut_ptr() as *mut u8;
            pack_acts::<K>(&a, n16, nb, pp);
            let row = |r: usize| -> &[K::W] { cast_blocks(w.row(r)) };
            let mut r0 = 0;
            while r0 < nr {
                let present = (nr - r0).min(16);
                let rows: [Option<&[K::W]>; 16] =
                    std::array::from_fn(|i| (i < present).then(|| row(r0 + i)));
                let mut t0 = 0;
                while t0 < n16 {
                    t0 += crate::dispatch::token_group!(n16 - t0, NT => {
                        group_k_amx::<K, NT>(&rows, &a, pp, t0, nb, out.window(t0, NT, r0, present))
                    }; 128, 64, 32, 16);
                }
                r0 += 16;
            }
            PACKED.with(|b| b.replace(buf));
            release();
        }
    }
    if n16 < nt {
        super::vnni::gemm_tile_k::<K::W>(n, w, a.rows(n16, nt - n16), out.rows_mut(n16, nt - n16));
    }
}

/// Bytes of one (token group, super-block) unit of the packed activations: the four activation
/// tiles (1 KiB each: 16 tokens x 64 bytes of one 64-element chunk, 64 bytes apart), then each
/// token's min pairs (16 bytes) where the format has mins.
const PACK_UNIT: usize = 4096 + 256;

thread_local! {
    /// Each thread's packed activations for [`amx_tile_k`]: the tokens of one call (at most
    /// `TILE_TOKENS`, 128) x the row's super-blocks in [`PACK_UNIT`]s, 64-byte aligned; grown
    /// to the largest call and kept (about 2.2 MiB for rows of 16384 elements).
    static PACKED: RefCell<Vec<__m512i>> = const { RefCell::new(Vec::new()) };
}

/// Packs the first `n16` tokens of `a` (whole groups of 16) into [`PACK_UNIT`]s at `pp`, unit
/// (g, k) at `(g * nb + k) * PACK_UNIT`: the activation tiles are then 16 aligned rows of 64
/// bytes, one cache line each, where in place each row of a tile spans two (the blocks are 292
/// bytes), and the tokens' min pairs are made once per call instead of once per row group.
///
/// # Safety
/// AVX-512 F/BW; `pp` 64-byte aligned with `n16 / 16 * nb * PACK_UNIT` writable bytes.
#[inline(always)]
unsafe fn pack_acts<K: AmxK>(a: &Rows<u8>, n16: usize, nb: usize, pp: *mut u8) {
    // SAFETY: guaranteed by the caller; the loads are inside bounds-checked blocks.
    unsafe {
        for t in 0..n16 {
            let ab: &[BlockQ8_K] = cast_blocks(a.row(t));
            let (g, i) = (t / 16, t % 16);
            for (k, b) in ab[..nb].iter().enumerate() {
                let unit = pp.add((g * nb + k) * PACK_UNIT);
                for c in 0..4 {
                    let v = _mm512_loadu_si512(b.qs[64 * c..].as_ptr() as *const __m512i);
                    _mm512_store_si512(unit.add(1024 * c + 64 * i) as *mut __m512i, v);
                }
                if K::MIN_PAIRS {
                    (unit.add(4096 + 16 * i) as *mut [i32; 4]).write_unaligned(k_min_pairs(b));
                }
            }
        }
    }
}

/// Configures the k-quant tiles: tmm0, tmm1 (16 x 64 bytes: activations), tmm2, tmm3 (16 x 64:
/// the `h` and `l` weight tiles of 64 elements) and tmm4..=tmm7 (16 x 64: sums).
///
/// # Safety
/// [`available`] must be true.
#[inline(always)]
unsafe fn configure_k() {
    // SAFETY: guaranteed by the caller; the shapes are within 64 bytes x 16 rows.
    unsafe { load_config([(64, 16); 8]) };
}

/// One super-block's weight tiles: for each 64-element chunk c, `[c][0]` = the `h` tile and
/// `[c][1]` the `l` tile, each 16 rows of 64 bytes in AMX's B layout (row j: every weight row's
/// elements 64c + 4j..64c + 4j + 4, row r in dword r).
type KWeights = [[[__m512i; 16]; 2]; 4];

/// The header of super-block `k` and its weight tiles ([`KWeights`]) into `wt` (written whole);
/// prefetches the rows' next super-block.
///
/// # Safety
/// AVX-512 F/BW/VL and VNNI; `wt` writable.
#[inline(always)]
unsafe fn k_weights<K: AmxK>(rows: &[Option<&[K::W]>; 16], k: usize, wt: *mut KWeights) -> K::H {
    // SAFETY: guaranteed by the caller; the prefetches are of addresses inside a block.
    unsafe {
        let h = K::header(rows, k);
        let low = _mm512_set1_epi16(0xFF);
        let (m6, off) = (_mm512_set1_epi16(63), _mm512_set1_epi16(K::OFFSET));
        for s in 0..8 {
            let mut v = [_mm256_setzero_si256(); 16];
            for r in 0..16 {
                if let Some(b) = rows[r] {
                    v[r] = K::levels(&b[k], s);
                    if let Some(next) = b.get(k + 1) {
                        let p = next as *const K::W as *const i8;
                        if 64 * s < std::mem::size_of::<K::W>() {
                            _mm_prefetch::<_MM_HINT_T0>(p.add(64 * s));
                        }
                    }
                }
            }
            let q = transpose16(&v);
            for (j, &qj) in q.iter().enumerate() {
                // Lane r of qj: row r's levels 32s + 4j..+4; each word of `sc` = their scale.
                let sc = K::scale(&h, s, j);
                let sc = _mm512_or_si512(
                    _mm512_and_si512(sc, _mm512_set1_epi32(0xFFFF)),
                    _mm512_slli_epi32::<16>(sc),
                );
                // Even and odd bytes: w = scale * (u - OFFSET) in words (|w| <= 4096).
                let we = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_and_si512(qj, low), off), sc);
                let wo = _mm512_mullo_epi16(_mm512_sub_epi16(_mm512_srli_epi16::<8>(qj), off), sc);
                // h = w >> 6 (arithmetic) and l = w & 63, per byte.
                let hi = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srai_epi16::<6>(we), low),
                    _mm512_slli_epi16::<8>(_mm512_srai_epi16::<6>(wo)),
                );
                let lo = _mm512_or_si512(
                    _mm512_and_si512(we, m6),
                    _mm512_slli_epi16::<8>(_mm512_and_si512(wo, m6)),
                );
                (*wt)[s / 2][0][8 * (s % 2) + j] = hi;
                (*wt)[s / 2][1][8 * (s % 2) + j] = lo;
            }
        }
        h
    }
}

/// The products of one super-block for one or two groups of 16 tokens (`a1` null: one group):
/// tmm4 / tmm5 = `h` / `l` sums of the group at `a0`, tmm6 / tmm7 those of `a1`, over the four
/// 64-element chunks (the packed activation tiles of [`pack_acts`]: row i of chunk c at `a +
/// 1024c + 64i`), stored as 16 x 16 i32 at `out[0..2]` (`a0`) and `out[2..4]` (`a1`).
///
/// # Safety
/// Tiles configured by [`configure_k`]; `wt` one [`KWeights`]; 4 KiB readable at `a0` (and
/// `a1`); `out` 4 KiB writable (2 KiB for one group).
#[inline(always)]
unsafe fn k_products(wt: *const KWeights, a0: *const i8, a1: *const i8, out: *mut i32) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let two = !a1.is_null();
        asm!("tilezero tmm4", "tilezero tmm5", options(nostack, nomem));
        if two {
            asm!("tilezero tmm6", "tilezero tmm7", options(nostack, nomem));
        }
        for c in 0..4 {
            // Group a0 against both weight tiles, then (if any) group a1 against the same.
            asm!(
                "tileloadd tmm2, [{wh} + {s}*1]",
                "tileloadd tmm0, [{a0} + {s}*1]",
                "tdpbssd tmm4, tmm0, tmm2",
                "tileloadd tmm3, [{wl} + {s}*1]",
                "tdpbssd tmm5, tmm0, tmm3",
                wh = in(reg) (*wt)[c][0].as_ptr(),
                wl = in(reg) (*wt)[c][1].as_ptr(),
                a0 = in(reg) a0.add(1024 * c),
                s = in(reg) 64usize,
                options(nostack, readonly),
            );
            if two {
                asm!(
                    "tileloadd tmm1, [{a1} + {s}*1]",
                    "tdpbssd tmm6, tmm1, tmm2",
                    "tdpbssd tmm7, tmm1, tmm3",
                    a1 = in(reg) a1.add(1024 * c),
                    s = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
        }
        asm!(
            "tilestored [{o} + {s64}*1], tmm4",
            "tilestored [{o1} + {s64}*1], tmm5",
            o = in(reg) out,
            o1 = in(reg) out.add(256),
            s64 = in(reg) 64usize,
            options(nostack),
        );
        if two {
            asm!(
                "tilestored [{o} + {s64}*1], tmm6",
                "tilestored [{o1} + {s64}*1], tmm7",
                o = in(reg) out.add(512),
                o1 = in(reg) out.add(768),
                s64 = in(reg) 64usize,
                options(nostack),
            );
        }
    }
}

/// 16 rows x tokens t0..t0 + NT of `a` (NT a multiple of 16) of a k-quant, all super-blocks.
/// Pipelined: super-block k's products are issued, then k + 1's weight tiles made and k - 1's
/// sums read back and finished, so that neither the tile loads nor the reads wait for the stores
/// just made.
///
/// # Safety
/// AVX-512 VNNI and [`available`], with the tiles configured by [`configure_k`]; `pp` the packed
/// activations ([`pack_acts`]) of tokens 0..t0 + NT of `a`.
#[inline(always)]
unsafe fn group_k_amx<K: AmxK, const NT: usize>(
    rows: &[Option<&[K::W]>; 16],
    a: &Rows<u8>,
    pp: *const u8,
    t0: usize,
    nb: usize,
    out: RowsMut<f32>,
) {
    // SAFETY: the caller guarantees AVX-512 VNNI, configured AMX tiles and `pp`; every other
    // memory access below is bounds-checked or inside a local buffer of the size named beside it.
    unsafe {
        assert!(NT.is_multiple_of(16) && NT <= MAX_NT && nb > 0);
        let acts: [&[BlockQ8_K]; NT] = std::array::from_fn(|i| cast_blocks(a.row(t0 + i)));
        let mut acc = [_mm512_setzero_ps(); NT];
        // Weight tiles of two super-blocks, headers of three (k + 1 is made before k - 1 is
        // finished); sums (h, l) of two super-blocks for each token group.
        // Not zeroed (48 KiB per call): every weight tile is written by `k_weights` and every
        // sum by a tile store before it is read.
        let mut wt = MaybeUninit::<Aligned<[KWeights; 2]>>::uninit();
        let wt = wt.as_mut_ptr() as *mut KWeights;
        let h0 = k_weights::<K>(rows, 0, wt);
        let mut hd = [h0; 3];
        let mut sums = MaybeUninit::<Aligned<[[[[[i32; 16]; 16]; 2]; MAX_NT / 16]; 2]>>::uninit();
        let sp = sums.as_mut_ptr() as *mut i32;
        // Row i of the (h, l) sums `hl` of token group g, super-block parity `par`.
        let at = |par: usize, g: usize, hl: usize, i: usize| {
            sp.add((((par * (MAX_NT / 16) + g) * 2 + hl) * 16 + i) * 16)
        };
        for k in 0..=nb {
            let par = k % 2;
            if k < nb {
                let mut g = 0;
                while g < NT / 16 {
                    // The activation tiles of token groups g and g + 1 (if any), super-block k.
                    let a0 = pp.add(((t0 / 16 + g) * nb + k) * PACK_UNIT) as *const i8;
                    let a1 = if g + 1 < NT / 16 {
                        a0.add(nb * PACK_UNIT)
                    } else {
                        std::ptr::null()
                    };
                    k_products(wt.add(par), a0, a1, at(par, g, 0, 0));
                    g += 2;
                }
                if k + 1 < nb {
                    hd[(k + 1) % 3] = k_weights::<K>(rows, k + 1, wt.add(1 - par));
                }
            }
            if k == 0 {
                continue;
            }
            // Super-block k - 1: exact scaled sums 64 H + L, then the float steps.
            let (j, jp) = (k - 1, (k - 1) % 2);
            let h = &hd[j % 3];
            for g in 0..NT / 16 {
                let pairs = pp.add(((t0 / 16 + g) * nb + j) * PACK_UNIT + 4096);
                for i in 0..16 {
                    let t = 16 * g + i;
                    // Rows of sums are 16 aligned i32 (64-byte aligned rows).
                    let ch = _mm512_load_si512(at(jp, g, 0, i) as *const __m512i);
                    let cl = _mm512_load_si512(at(jp, g, 1, i) as *const __m512i);
                    let isum = _mm512_add_epi32(_mm512_slli_epi32::<6>(ch), cl);
                    acc[t] = K::finish(h, &acts[t][j], pairs.add(16 * i), isum, acc[t]);
                }
            }
        }
        store_rows16(&acc, out);
    }
}
