#!/usr/bin/env python3
"""Smoke test of ferrolm's C API from Python through ctypes: load the shared library, check the
version and an error path, then generate with a per-token callback.

    python3 capi/examples/python/ferrolm_smoke.py --lib target/release/libferrolm.so \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf [--prompt TEXT] [-n N] [--seed S]

The generated text, and only it, goes to stdout (the text `ferrolm run` prints for the same
prompt, -n and seed); checks and statistics go to stderr. Exits non-zero on any failure.
"""

import argparse
import ctypes as C
import sys

OK, NULL_POINTER, IO, FORMAT = 0, 2, 4, 5
TOKEN_NONE = -1


class ModelParams(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("use_mmap", C.c_bool), ("reserved", C.c_uint8 * 7)]


class ContextParams(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("n_ctx", C.c_uint32),
        ("n_batch", C.c_uint32),
        ("n_threads", C.c_int32),
        ("kv_type", C.c_int32),
    ]


class SamplerParams(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("temp", C.c_float),
        ("top_k", C.c_int32),
        ("top_p", C.c_float),
        ("min_p", C.c_float),
        ("repeat_penalty", C.c_float),
        ("repeat_last_n", C.c_int32),
        ("frequency_penalty", C.c_float),
        ("presence_penalty", C.c_float),
        ("seed", C.c_uint64),
    ]


class GenerateParams(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("stop", C.POINTER(C.c_char_p)),
        ("n_stop", C.c_size_t),
        ("n_predict", C.c_int32),
        ("ignore_eos", C.c_bool),
        ("special", C.c_bool),
        ("parse_special", C.c_bool),
        ("reserved", C.c_uint8),
    ]


class GenerateStats(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("n_prompt", C.c_uint64),
        ("n_gen", C.c_uint64),
        ("prompt_ms", C.c_double),
        ("gen_ms", C.c_double),
        ("stop_reason", C.c_int),
        ("reserved", C.c_uint32),
    ]


class ModelInfo(C.Structure):
    _fields_ = [
        ("struct_size", C.c_size_t),
        ("arch", C.c_char_p),
        ("name", C.c_char_p),
        ("file_size", C.c_uint64),
        ("weight_bytes", C.c_uint64),
    ] + [
        (f, C.c_int32)
        for f in (
            "n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv", "head_dim", "n_ff", "n_ctx_train",
            "token_bos", "token_eos",
        )
    ]


TOKEN_CALLBACK = C.CFUNCTYPE(C.c_bool, C.c_void_p, C.c_int32, C.POINTER(C.c_char), C.c_size_t)


def bind(lib):
    """Declare the signatures used here (ctypes would otherwise assume int everywhere)."""
    P = C.c_void_p
    sigs = {
        "ferrolm_version": (C.c_char_p, []),
        "ferrolm_abi_version": (C.c_uint32, []),
        "ferrolm_status_string": (C.c_char_p, [C.c_int]),
        "ferrolm_last_error": (C.c_char_p, []),
        "ferrolm_model_default_params": (ModelParams, []),
        "ferrolm_context_default_params": (ContextParams, []),
        "ferrolm_sampler_default_params": (SamplerParams, []),
        "ferrolm_generate_default_params": (GenerateParams, []),
        "ferrolm_model_load": (C.c_int, [C.c_char_p, C.POINTER(ModelParams), C.POINTER(P)]),
        "ferrolm_model_free": (None, [P]),
        "ferrolm_model_get_info": (C.c_int, [P, C.POINTER(ModelInfo)]),
        "ferrolm_context_new": (C.c_int, [P, C.POINTER(ContextParams), C.POINTER(P)]),
        "ferrolm_context_free": (None, [P]),
        "ferrolm_context_error": (C.c_char_p, [P]),
        "ferrolm_sampler_set": (C.c_int, [P, C.POINTER(SamplerParams)]),
        "ferrolm_generate": (
            C.c_int,
            [P, C.c_char_p, C.POINTER(GenerateParams), TOKEN_CALLBACK, P, C.POINTER(GenerateStats)],
        ),
        "ferrolm_tokenize": (
            C.c_int,
            [P, C.c_char_p, C.c_size_t, C.c_bool, C.c_bool, C.POINTER(C.c_int32), C.c_size_t, C.POINTER(C.c_size_t)],
        ),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    lib = C.CDLL(args.lib)
    bind(lib)
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what, file=sys.stderr)
        if not cond:
            failures.append(what)

    check(lib.ferrolm_abi_version() == 1, "ABI version 1")
    check(lib.ferrolm_version().decode()[0].isdigit(), "version string")
    # The struct layouts above agree with the library's.
    for ty, fn in [
        (ModelParams, lib.ferrolm_model_default_params),
        (ContextParams, lib.ferrolm_context_default_params),
        (SamplerParams, lib.ferrolm_sampler_default_params),
        (GenerateParams, lib.ferrolm_generate_default_params),
    ]:
        check(fn().struct_size == C.sizeof(ty), f"sizeof {ty.__name__} == {C.sizeof(ty)}")

    model = C.c_void_p()
    st = lib.ferrolm_model_load(b"/nonexistent.gguf", None, C.byref(model))
    check(st == IO and not model, "loading a missing file fails with FERROLM_IO")
    check(b"/nonexistent.gguf" in lib.ferrolm_last_error(), "the message names the file")
    st = lib.ferrolm_model_load(None, None, C.byref(model))
    check(st == NULL_POINTER, "NULL path is FERROLM_NULL_POINTER")

    st = lib.ferrolm_model_load(args.model.encode(), None, C.byref(model))
    if st != OK:
        print(f"error: load: {lib.ferrolm_last_error().decode()}", file=sys.stderr)
        return 1
    ctx = C.c_void_p()
    try:
        info = ModelInfo(struct_size=C.sizeof(ModelInfo))
        check(lib.ferrolm_model_get_info(model, C.byref(info)) == OK, "model info")
        print(f"model: {info.arch.decode()} '{info.name.decode()}', {info.n_layer} layers, "
              f"vocabulary {info.n_vocab}", file=sys.stderr)

        toks = (C.c_int32 * 64)()
        n = C.c_size_t()
        p = args.prompt.encode()
        check(lib.ferrolm_tokenize(model, p, len(p), True, True, toks, 64, C.byref(n)) == OK and n.value > 0,
              "tokenize the prompt")

        st = lib.ferrolm_context_new(model, None, C.byref(ctx))
        check(st == OK, "context")
        if st != OK:
            return 1
        sp = lib.ferrolm_sampler_default_params()
        sp.seed = args.seed
        check(lib.ferrolm_sampler_set(ctx, C.byref(sp)) == OK, "sampler")

        pieces = []

        @TOKEN_CALLBACK
        def on_token(_user, token, text, length):
            pieces.append(C.string_at(text, length))
            return True

        gp = lib.ferrolm_generate_default_params()
        gp.n_predict = args.n
        stats = GenerateStats(struct_size=C.sizeof(GenerateStats))
        st = lib.ferrolm_generate(ctx, p, C.byref(gp), on_token, None, C.byref(stats))
        check(st == OK, "generate")
        if st != OK:
            print(f"error: generate: {lib.ferrolm_context_error(ctx).decode()}", file=sys.stderr)
            return 1
        text = b"".join(pieces)
        check(len(text) > 0 and stats.n_gen > 0, "generated some text")
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
        tps = stats.n_gen * 1e3 / stats.gen_ms if stats.gen_ms > 0 else 0.0
        print(f"\n{stats.n_gen} tokens, {tps:.1f} tokens/s", file=sys.stderr)
    finally:
        lib.ferrolm_context_free(ctx)
        lib.ferrolm_model_free(model)
    if failures:
        print(f"{len(failures)} check(s) failed: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
