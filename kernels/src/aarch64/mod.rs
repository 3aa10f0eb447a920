//! aarch64 NEON kernels (with an `sdot` path where dotprod is present).
