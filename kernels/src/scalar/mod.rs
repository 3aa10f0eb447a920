//! Scalar reference kernels: always compiled; the fallback and the test oracle.
