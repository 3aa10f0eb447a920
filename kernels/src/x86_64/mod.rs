//! x86-64 SIMD kernels (AVX2+FMA, AVX-512/VNNI where present).
