//! Mat-vec and batched mat-mul over the kernel table: quantize activations once, split rows across threads.
