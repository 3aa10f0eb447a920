//! The scale searches shared by the k-quant reference quantizers, written as ggml writes them
//! (`make_qx_quants`, `make_q3_quants`, `make_qkx2_quants` in ggml-quants.c at c392e5094).
//!
//! Every float expression keeps ggml's operand order and association (`w*x*l` is `(w*x)*l`), and
//! none is fused: Rust never contracts `a * b + c` into an FMA, which is what the reference build
//! (x86-64 `-O3` without `-march`) did too. That is what makes the output byte-exact.

use super::nearest_int;

/// Below this, a group counts as all zero (`GROUP_MAX_EPS` in ggml).
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// Weight of element `x` in the error sums of `make_qx_quants`, by `rmse_type`.
#[inline(always)]
fn qx_weight(qw: Option<&[f32]>, i: usize, x: f32, rmse_type: i32) -> f32 {
    match qw {
        Some(w) => w[i],
        None => match rmse_type {
            1 => x * x,
            2 => 1.0,
            3 => x.abs(),
            _ => x.abs().sqrt(),
        },
    }
}

/// Symmetric quantization of a group to `l` in `[-nmax, nmax)`, stored as `l + nmax` in `out`;
/// returns the scale. With `rmse_type != 0`, tries 18 scales around `nmax / max` and keeps the one
/// minimizing the weighted squared error (weights `qw`, or chosen by `rmse_type`).
///
/// x: [n], out: [n]. An all-zero group (amax < 1e-15) gives scale 0 and all `out` = 0.
pub fn make_qx_quants(
    x: &[f32],
    nmax: i32,
    out: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    assert_eq!(x.len(), out.len(), "make_qx_quants: length mismatch");
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let mut iscale = (-nmax) as f32 / max;
    if rmse_type == 0 {
        for (o, &v) in out.iter_mut().zip(x) {
            let l = nearest_int(iscale * v);
            *o = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = if rmse_type < 0 {
        (-rmse_type, true)
    } else {
        (rmse_type, false)
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (i, &v) in x.iter().enumerate() {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        out[i] = (l + nmax) as i8;
        let w = qx_weight(qw, i, v, rmse_type);
        let lf = l as f32;
        sumlx += w * v * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for (i, &v) in x.iter().enumerate() {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let w = qx_weight(qw, i, v, rmse_type);
            let lf = l as f32;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in out.iter_mut().zip(x) {
                let l = nearest_int(iscale * v);
                *o = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's group quantizer: symmetric, `l` in `[-nmax, nmax)`, stored as `l + nmax` (or all 0 for an
/// all-zero group). With `do_rmse`, refines the levels one at a time (up to 5 passes) to minimize
/// the x^2-weighted squared error and returns the least-squares scale; otherwise `max / -nmax`.
///
/// x: [n], out: [n].
pub fn make_q3_quants(x: &[f32], nmax: i32, out: &mut [i8], do_rmse: bool) -> f32 {
    assert_eq!(x.len(), out.len(), "make_q3_quants: length mismatch");
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let iscale = (-nmax) as f32 / max;
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for (o, &v) in out.iter_mut().zip(x) {
            let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            *o = l as i8;
            let w = v * v;
            let lf = l as f32;
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        for _itry in 0..5 {
            let mut n_changed = 0;
            for (i, &v) in x.iter().enumerate() {
                let w = v * v;
                let li = out[i] as f32;
                let mut slx = sumlx - w * v * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != out[i] as i32 {
                        let nl = new_l as f32;
                        slx += w * v * nl;
                        sl2 += w * nl * nl;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            out[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for o in out.iter_mut() {
            *o += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for (o, &v) in out.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *o = (l + nmax) as i8;
    }
    1.0 / iscale
}

/// Asymmetric quantization of a group to `l` in `[0, nmax]` with `x ~ scale * l - min`: starts
/// from the min/max fit, then tries `nstep + 1` scales `(nmax + rmin + rdelta * is) / (max - min)`,
/// solving the weighted least-squares scale and min for each set of levels and keeping the one of
/// least weighted error (absolute with `use_mad`, squared otherwise).
///
/// x, weights: [n]; out, aux: [n] scratch and result. Returns `(scale, min)` with `min >= 0`
/// (the value subtracted), as ggml returns the scale and writes `*the_min`.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx2_quants(
    x: &[f32],
    nmax: i32,
    weights: &[f32],
    out: &mut [u8],
    aux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    assert!(
        weights.len() == n && out.len() == n && aux.len() == n && n > 0,
        "make_qkx2_quants: length mismatch"
    );
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        out.fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        out[i] = l.clamp(0, nmax) as u8;
        let diff = scale * out[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                out.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}
