//! Strided row views: `n` rows of `len` items, row i at items `i * stride ..` of one slice.
//!
//! A view is checked once, when it is built (every row inside the slice, rows not overlapping),
//! so the kernels that take one (`GemmTileFn`, `GemvFn`, `MultiDotFn`) index its rows without
//! checking lengths again, and their signatures carry one argument per operand instead of four.

/// `n` rows of `len` items of `T`, row i being `data[i * stride..i * stride + len]`.
/// Invariant (checked by [`Rows::new`]): `n == 0`, or `stride >= len` and the last row ends
/// within `data`.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a, T> {
    data: &'a [T],
    n: usize,
    len: usize,
    stride: usize,
}

/// The mutable twin of [`Rows`]: disjoint rows (`stride >= len`), so each can be written alone.
#[derive(Debug)]
pub struct RowsMut<'a, T> {
    data: &'a mut [T],
    n: usize,
    len: usize,
    stride: usize,
}

/// Why `n` rows of `len` at `stride` do not fit a slice of `have` items; `None` when they do.
fn misfit(n: usize, len: usize, stride: usize, have: usize) -> Option<String> {
    if n == 0 {
        return None;
    }
    if n > 1 && stride < len {
        return Some(format!("rows of {len} items overlap at stride {stride}"));
    }
    let end = (n - 1).checked_mul(stride).and_then(|o| o.checked_add(len));
    match end {
        Some(end) if end <= have => None,
        _ => Some(format!(
            "{n} rows of {len} items at stride {stride} do not fit {have} items"
        )),
    }
}

/// The shape getters both views share.
macro_rules! shape_accessors {
    () => {
        /// Number of rows.
        pub fn n(&self) -> usize {
            self.n
        }

        /// Items per row.
        pub fn row_len(&self) -> usize {
            self.len
        }

        /// Items from one row's start to the next's.
        pub fn stride(&self) -> usize {
            self.stride
        }
    };
}

/// Panics naming the misfit when `n` rows of `len` at `stride` do not fit `have` items.
#[track_caller]
fn check(n: usize, len: usize, stride: usize, have: usize) {
    if let Some(why) = misfit(n, len, stride, have) {
        panic!("row view: {why}");
    }
}

impl<'a, T> Rows<'a, T> {
    /// The view of `n` rows of `len` items at `stride`; `None` when they do not fit `data`.
    pub fn try_new(data: &'a [T], n: usize, len: usize, stride: usize) -> Option<Self> {
        misfit(n, len, stride, data.len())
            .is_none()
            .then_some(Rows {
                data,
                n,
                len,
                stride,
            })
    }

    /// As [`Rows::try_new`]; panics naming the misfit, as slice indexing does.
    #[track_caller]
    pub fn new(data: &'a [T], n: usize, len: usize, stride: usize) -> Self {
        check(n, len, stride, data.len());
        Rows {
            data,
            n,
            len,
            stride,
        }
    }

    /// One row: all of `row`.
    pub fn one(row: &'a [T]) -> Self {
        Rows {
            data: row,
            n: 1,
            len: row.len(),
            stride: row.len(),
        }
    }

    shape_accessors!();

    /// Row `i` (< `n`).
    #[inline(always)]
    pub fn row(&self, i: usize) -> &'a [T] {
        assert!(i < self.n, "row {i} of {}", self.n);
        &self.data[i * self.stride..i * self.stride + self.len]
    }

    /// The first `N` rows (`N <= n`), as an array.
    #[track_caller]
    pub fn first<const N: usize>(&self) -> [&'a [T]; N] {
        assert!(N <= self.n, "{N} rows of {}", self.n);
        let mut rows: [&'a [T]; N] = [&self.data[..0]; N];
        for (i, r) in rows.iter_mut().enumerate() {
            *r = self.row(i);
        }
        rows
    }

    /// Rows `r0..r0 + n` (inside this view).
    #[track_caller]
    pub fn rows(&self, r0: usize, n: usize) -> Rows<'a, T> {
        assert!(
            r0.checked_add(n).is_some_and(|e| e <= self.n),
            "rows {r0}..+{n} of {}",
            self.n
        );
        Rows {
            data: if n == 0 {
                &self.data[..0]
            } else {
                &self.data[r0 * self.stride..]
            },
            n,
            len: self.len,
            stride: self.stride,
        }
    }
}

impl<'a, T> RowsMut<'a, T> {
    /// The view of `n` rows of `len` items at `stride`; `None` when they do not fit `data`.
    pub fn try_new(data: &'a mut [T], n: usize, len: usize, stride: usize) -> Option<Self> {
        match misfit(n, len, stride, data.len()) {
            None => Some(RowsMut {
                data,
                n,
                len,
                stride,
            }),
            Some(_) => None,
        }
    }

    /// As [`RowsMut::try_new`]; panics naming the misfit, as slice indexing does.
    #[track_caller]
    pub fn new(data: &'a mut [T], n: usize, len: usize, stride: usize) -> Self {
        check(n, len, stride, data.len());
        RowsMut {
            data,
            n,
            len,
            stride,
        }
    }

    /// One row: all of `row`.
    pub fn one(row: &'a mut [T]) -> Self {
        let len = row.len();
        RowsMut {
            data: row,
            n: 1,
            len,
            stride: len,
        }
    }

    shape_accessors!();

    /// Row `i` (< `n`).
    #[inline(always)]
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.n, "row {i} of {}", self.n);
        &mut self.data[i * self.stride..i * self.stride + self.len]
    }

    /// The first item of row 0, for kernels that write several rows through one pointer: row i's
    /// items are at `i * stride() .. i * stride() + row_len()` from it (all inside the view).
    #[inline(always)]
    pub fn as_mut_ptr(&mut self) -> *mut T {
        self.data.as_mut_ptr()
    }

    /// Rows `r0..r0 + n`, items `c0..c0 + len` of each (inside this view), borrowed.
    #[track_caller]
    pub fn window(&mut self, r0: usize, n: usize, c0: usize, len: usize) -> RowsMut<'_, T> {
        assert!(
            r0.checked_add(n).is_some_and(|e| e <= self.n)
                && c0.checked_add(len).is_some_and(|e| e <= self.len),
            "window rows {r0}..+{n}, items {c0}..+{len} of {} rows of {}",
            self.n,
            self.len
        );
        let data = if n == 0 {
            &mut self.data[..0]
        } else {
            &mut self.data[r0 * self.stride + c0..]
        };
        RowsMut {
            data,
            n,
            len,
            stride: self.stride,
        }
    }

    /// Rows `r0..r0 + n`, whole, borrowed.
    #[track_caller]
    pub fn rows_mut(&mut self, r0: usize, n: usize) -> RowsMut<'_, T> {
        let len = self.len;
        self.window(r0, n, 0, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_check_their_extent() {
        let d = [0u8; 10];
        assert!(Rows::try_new(&d, 3, 4, 3).is_none(), "overlapping rows");
        assert!(Rows::try_new(&d, 3, 3, 4).is_none(), "last row ends at 11");
        assert!(Rows::try_new(&d, 3, 2, 4).is_some());
        assert!(Rows::try_new(&d, 0, 99, 99).is_some(), "no rows always fit");
        assert!(
            Rows::try_new(&d, usize::MAX, 1, usize::MAX).is_none(),
            "overflow"
        );
        let r = Rows::new(&d, 3, 2, 4);
        assert_eq!(r.rows(1, 2).row(1).as_ptr(), d[8..].as_ptr());
        let mut m = [0u32; 12];
        let mut v = RowsMut::new(&mut m, 3, 4, 4);
        v.window(1, 2, 1, 2).row_mut(1).copy_from_slice(&[7, 8]);
        assert_eq!(m[9..11], [7, 8]);
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn a_misfit_panics_naming_it() {
        let d = [0f32; 5];
        let _ = Rows::new(&d, 2, 3, 3);
    }
}
