#!/usr/bin/env python3
"""Builds the two Hugging Face-layout Llama checkpoints that ferrolm-quantize's converter tests read.

Usage:
    python3 scripts/make_hf_checkpoint.py models/SmolLM2-135M-Instruct.Q4_1.gguf OUTDIR [--only smollm2|synth]

Needs numpy, safetensors and gguf (PyPI; scripts/make-hf-fixtures.sh installs gguf==0.19.0 into
models/.pydeps).  Normally run through scripts/make-hf-fixtures.sh, which then checks every file.

OUTDIR/smollm2-135m/
    SmolLM2-135M-Instruct as Hugging Face ships it, recovered from the Q4_1 GGUF: every tensor is
    dequantized with gguf.quants.dequantize, attn_q/attn_k rows are turned back from llama.cpp's
    interleaved-pair layout into HF's rotate-half layout (the exact inverse of the permutation in
    llama.cpp's convert_hf_to_gguf.py), and everything is stored as BF16 in model.safetensors under
    HF tensor names.  Embeddings are tied (no lm_head.weight).  Beside it: config.json,
    generation_config.json, and the tokenizer (tokenizer.json: byte-level BPE with the GGUF's vocab,
    merges and special tokens, pre-tokenizer Digits(individual) + ByteLevel as SmolLM2 has;
    tokenizer_config.json; special_tokens_map.json).

OUTDIR/synth-llama-256/
    A synthetic, untied LlamaForCausalLM whose widths are all multiples of 256 (hidden 512,
    4 layers, 8 heads, 4 KV heads, FFN 1536, vocab 49152) so that every k-quant applies, with
    weights from numpy.random.default_rng(1234), F32, in two shards plus
    model.safetensors.index.json.  Same tokenizer files as smollm2-135m.

Why the output must be byte-identical: the reference GGUFs in tools/tests/data/convert/ are
llama.cpp's output (convert_hf_to_gguf.py, llama-quantize) for exactly these checkpoints, and the
tests compare ferrolm-quantize's output with them file sha256 for file sha256.  A checkpoint that
differs in a single byte (a JSON key order, safetensors header padding, a BF16 rounding, one random
draw) gives different GGUFs, so every file this script writes is checked against
tools/tests/data/convert/hf-checkpoints.json.  The output is deterministic: gguf 0.19.0 +
numpy 2.x and gguf 0.15.0 + numpy 1.26 give the same bytes.

tokenizer_config.json deliberately has no "add_bos_token" key (SmolLM2's own file has none):
llama.cpp's converter at the reference commit writes tokenizer.ggml.add_bos_token itself for
49152-token vocabularies and aborts with "Duplicated key name" when the config has it too.
"""

import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import safetensors
from gguf import GGUFReader, GGUFValueType, quants

SMOLLM2 = "smollm2-135m"
SYNTH = "synth-llama-256"
TRANSFORMERS_VERSION = "4.42.3"

# GGUF token types (llama.cpp's llama_token_type)
TT_NORMAL, TT_CONTROL, TT_USER_DEFINED = 1, 3, 4


# ------------------------------------------------------------------------------------ helpers


def meta(reader, key):
    """A GGUF metadata value (int, float, str, or list of those), or None when the key is absent.
    Read through `parts`/`data`, which old and new gguf versions both have."""
    field = reader.fields.get(key)
    if field is None:
        return None
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        if field.types[-1] == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


def short_f32(x):
    """The shortest decimal that reads back as the same float32 (9.99999974738e-06 -> 1e-05)."""
    return float(str(np.float32(x)))


def save_json(path, obj, sort_keys=True):
    """JSON as the checkpoints have it: 2-space indent, UTF-8 unescaped, trailing newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=sort_keys, ensure_ascii=False)
        f.write("\n")


def bf16_bits(x):
    """float32 array -> bfloat16 bit patterns (uint16): round to nearest, ties to even; a NaN
    keeps its top bits and is made quiet."""
    bits = np.ascontiguousarray(x, dtype="<f4").view("<u4")
    one = np.uint32(1)
    out = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & one)) >> np.uint32(16)).astype("<u2")
    is_nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if is_nan.any():
        out[is_nan] = ((bits[is_nan] >> np.uint32(16)) | np.uint32(0x0040)).astype("<u2")
    return out


def save_safetensors(path, tensors):
    """Writes {name: (dtype 'F32' | 'BF16', shape, little-endian numpy array)} as a .safetensors
    file, laid out the way the safetensors package does it: an 8-byte header length, the compact
    JSON header ("__metadata__": {"format": "pt"} first, then the tensors by name), padded with
    spaces to a multiple of 8, then the data in the same name order.  Returns the data size."""
    names = sorted(tensors)
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": [int(d) for d in shape], "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    text += b" " * (-len(text) % 8)
    part = path + ".part"
    with open(part, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name][2]).tobytes())
    os.replace(part, path)
    verify_safetensors(path, tensors)
    return offset


def verify_safetensors(path, tensors):
    """Reads the file back with the safetensors package: same names, shapes and dtypes, and the
    F32 tensors bit for bit (numpy has no bfloat16; the sha256 check covers those bytes)."""
    dtypes = {"F32": "float32", "BF16": "bfloat16"}
    with safetensors.safe_open(path, framework="numpy") as f:
        if sorted(f.keys()) != sorted(tensors):
            raise SystemExit(f"{path}: tensor names do not read back")
        for name, (dtype, shape, data) in tensors.items():
            sl = f.get_slice(name)
            if list(sl.get_shape()) != [int(d) for d in shape] or sl.get_dtype().lower() not in (dtype.lower(), dtypes[dtype]):
                raise SystemExit(f"{path}: {name}: shape or dtype does not read back")
            if dtype == "F32" and not np.array_equal(f.get_tensor(name).view("<u4"), data.view("<u4")):
                raise SystemExit(f"{path}: {name}: data does not read back")


# ------------------------------------------------------------------------------------ tokenizer


def write_tokenizer(reader, outdir, model_max_length):
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json from the GGUF's vocab.
    Returns the special token ids and the vocab size."""
    if meta(reader, "tokenizer.ggml.model") != "gpt2":
        raise SystemExit("expected a gpt2 (byte-level BPE) tokenizer in the GGUF")
    if meta(reader, "tokenizer.ggml.pre") != "smollm":
        raise SystemExit("expected the 'smollm' pre-tokenizer in the GGUF")
    tokens = meta(reader, "tokenizer.ggml.tokens")
    types = meta(reader, "tokenizer.ggml.token_type")
    merges = meta(reader, "tokenizer.ggml.merges")
    if len(set(tokens)) != len(tokens):
        raise SystemExit("the GGUF vocabulary has duplicate token strings")
    if any(len(m.split(" ")) != 2 for m in merges):
        raise SystemExit("a GGUF merge is not two space-separated parts")
    bos = meta(reader, "tokenizer.ggml.bos_token_id")
    eos = meta(reader, "tokenizer.ggml.eos_token_id")
    unk = meta(reader, "tokenizer.ggml.unknown_token_id")
    pad = meta(reader, "tokenizer.ggml.padding_token_id")
    chat_template = meta(reader, "tokenizer.chat_template")

    added = []
    for i, (text, kind) in enumerate(zip(tokens, types)):
        if kind == TT_NORMAL:
            continue
        if kind not in (TT_CONTROL, TT_USER_DEFINED):
            raise SystemExit(f"token {i} {text!r}: unsupported token type {kind}")
        added.append({"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": kind == TT_CONTROL})

    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", **byte_level},
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": {text: i for i, text in enumerate(tokens)},
            "merges": merges,
        },
    }
    save_json(os.path.join(outdir, "tokenizer.json"), tokenizer, sort_keys=False)

    extra = [tokens[i] for i in (bos, eos) if i is not None]
    cfg = {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for a in added
        },
        "additional_special_tokens": extra,
        "bos_token": tokens[bos],
        "clean_up_tokenization_spaces": False,
        "eos_token": tokens[eos],
        "model_max_length": model_max_length,
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": tokens[unk],
        "vocab_size": len(tokens),
    }
    if pad is not None:
        cfg["pad_token"] = tokens[pad]
    if chat_template is not None:
        cfg["chat_template"] = chat_template
    save_json(os.path.join(outdir, "tokenizer_config.json"), cfg)

    def entry(i):
        return {"content": tokens[i], "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}

    special_map = {"additional_special_tokens": extra, "bos_token": entry(bos), "eos_token": entry(eos),
                   "unk_token": entry(unk)}
    if pad is not None:
        special_map["pad_token"] = entry(pad)
    save_json(os.path.join(outdir, "special_tokens_map.json"), special_map)
    return {"bos": bos, "eos": eos, "pad": pad, "n_vocab": len(tokens)}


# ------------------------------------------------------------------------------------ SmolLM2

BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def to_hf_name(name):
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    p = name.split(".")
    if len(p) == 4 and p[0] == "blk" and p[2] in BLOCK_NAMES:
        return f"model.layers.{int(p[1])}.{BLOCK_NAMES[p[2]]}.{p[3]}"
    raise SystemExit(f"tensor {name!r} has no Hugging Face name")


def gguf_rows(w, n_head):
    """HF rotate-half rows -> llama.cpp's interleaved pairs, per head (as convert_hf_to_gguf.py)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_rows(w, n_head):
    """The inverse of gguf_rows: llama.cpp's interleaved pairs -> HF rotate-half rows."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_smollm2(gguf_path, outdir):
    reader = GGUFReader(gguf_path)
    if meta(reader, "general.architecture") != "llama":
        raise SystemExit(f"{gguf_path}: not a llama GGUF")

    def hp(key):
        return meta(reader, "llama." + key)

    n_head, n_head_kv, n_embd = hp("attention.head_count"), hp("attention.head_count_kv"), hp("embedding_length")
    n_ctx, n_vocab = hp("context_length"), hp("vocab_size")
    if hp("rope.dimension_count") not in (None, n_embd // n_head):
        raise SystemExit("partial rotary embeddings are not handled")
    os.makedirs(outdir, exist_ok=True)

    tensors = {}
    for t in reader.tensors:
        shape = tuple(reversed([int(d) for d in t.shape]))  # numpy order: GGUF's ne0 last
        w = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        name = to_hf_name(t.name)
        for proj, heads in ((".self_attn.q_proj.", n_head), (".self_attn.k_proj.", n_head_kv)):
            if proj in name:
                hf = hf_rows(w, heads)
                if not np.array_equal(gguf_rows(hf, heads), w):
                    raise SystemExit(f"{name}: the row un-permutation is not an inverse")
                w = hf
        tensors[name] = ("BF16", shape, bf16_bits(w))
    tied = "lm_head.weight" not in tensors
    save_safetensors(os.path.join(outdir, "model.safetensors"), tensors)

    tok = write_tokenizer(reader, outdir, n_ctx)
    if tok["n_vocab"] != n_vocab:
        raise SystemExit("the tokenizer and the model disagree on the vocabulary size")

    save_json(os.path.join(outdir, "config.json"), {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": tok["bos"],
        "eos_token_id": tok["eos"],
        "hidden_act": "silu",
        "hidden_size": n_embd,
        "initializer_range": 0.041666666666666664,
        "intermediate_size": hp("feed_forward_length"),
        "max_position_embeddings": n_ctx,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": n_head,
        "num_hidden_layers": hp("block_count"),
        "num_key_value_heads": n_head_kv,
        "pad_token_id": tok["pad"],
        "pretraining_tp": 1,
        "rms_norm_eps": short_f32(hp("attention.layer_norm_rms_epsilon")),
        "rope_scaling": None,
        "rope_theta": short_f32(hp("rope.freq_base")),
        "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": n_vocab,
    })
    save_json(os.path.join(outdir, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": tok["bos"], "eos_token_id": tok["eos"],
        "pad_token_id": tok["pad"], "transformers_version": TRANSFORMERS_VERSION,
    })
    print(f"{outdir}: {len(tensors)} tensors, BF16, tied embeddings: {tied}")


# ------------------------------------------------------------------------------------ synthetic

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB = 512, 4, 8, 4, 1536, 49152
SEED, STD, NORM_STD = 1234, 0.02, 0.02


def build_synth(outdir, tokenizer_dir):
    """The synthetic model.  The random draws happen in a fixed order, which the bytes depend on:
    embed_tokens; for each layer input_layernorm, q, k, v, o, post_attention_layernorm, gate, up,
    down; then model.norm; then lm_head.  Layers 0-1 and embed_tokens go in shard 1, the rest in
    shard 2."""
    rng = np.random.default_rng(seed=SEED)
    kv_width = KV_HEADS * (HIDDEN // HEADS)

    def matrix(rows, cols):
        return ("F32", (rows, cols), rng.normal(0.0, STD, size=(rows, cols)).astype("<f4"))

    def norm():
        return ("F32", (HIDDEN,), (1.0 + rng.normal(0.0, NORM_STD, size=(HIDDEN,))).astype("<f4"))

    first, second = {}, {}
    first["model.embed_tokens.weight"] = matrix(VOCAB, HIDDEN)
    for i in range(LAYERS):
        shard = first if i < LAYERS // 2 else second
        p = f"model.layers.{i}."
        shard[p + "input_layernorm.weight"] = norm()
        shard[p + "self_attn.q_proj.weight"] = matrix(HIDDEN, HIDDEN)
        shard[p + "self_attn.k_proj.weight"] = matrix(kv_width, HIDDEN)
        shard[p + "self_attn.v_proj.weight"] = matrix(kv_width, HIDDEN)
        shard[p + "self_attn.o_proj.weight"] = matrix(HIDDEN, HIDDEN)
        shard[p + "post_attention_layernorm.weight"] = norm()
        shard[p + "mlp.gate_proj.weight"] = matrix(FFN, HIDDEN)
        shard[p + "mlp.up_proj.weight"] = matrix(FFN, HIDDEN)
        shard[p + "mlp.down_proj.weight"] = matrix(HIDDEN, FFN)
    second["model.norm.weight"] = norm()
    second["lm_head.weight"] = matrix(VOCAB, HIDDEN)

    os.makedirs(outdir, exist_ok=True)
    shards = [first, second]
    weight_map, total = {}, 0
    for k, shard in enumerate(shards, start=1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        total += save_safetensors(os.path.join(outdir, fname), shard)
        weight_map.update((name, fname) for name in shard)
    save_json(os.path.join(outdir, "model.safetensors.index.json"),
              {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})

    save_json(os.path.join(outdir, "config.json"), {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": STD,
        "intermediate_size": FFN,
        "max_position_embeddings": 4096,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB,
    })
    save_json(os.path.join(outdir, "generation_config.json"), {
        "_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2,
        "transformers_version": TRANSFORMERS_VERSION,
    })
    if os.path.abspath(tokenizer_dir) != os.path.abspath(outdir):
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copyfile(os.path.join(tokenizer_dir, f), os.path.join(outdir, f))
    print(f"{outdir}: {len(weight_map)} tensors, F32, {len(shards)} shards, {total} bytes of data")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf", help="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("outdir", help="where smollm2-135m/ and synth-llama-256/ go (created)")
    ap.add_argument("--only", choices=("smollm2", "synth"), help="build one checkpoint only")
    args = ap.parse_args()
    if not os.path.isfile(args.gguf):
        raise SystemExit(f"{args.gguf}: no such file")
    smol = os.path.join(args.outdir, SMOLLM2)
    synth = os.path.join(args.outdir, SYNTH)
    if args.only in (None, "smollm2"):
        build_smollm2(args.gguf, smol)
    if args.only == "synth":
        # The tokenizer files straight from the GGUF, without building smollm2-135m first.
        reader = GGUFReader(args.gguf)
        os.makedirs(synth, exist_ok=True)
        write_tokenizer(reader, synth, meta(reader, "llama.context_length"))
        build_synth(synth, synth)
    elif args.only is None:
        build_synth(synth, smol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
