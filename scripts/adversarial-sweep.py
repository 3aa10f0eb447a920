#!/usr/bin/env python3
"""Adversarial sweep of `ferrolm` and `quantize`: hostile files, arguments, outputs and signals.

Run by hand (it is not part of the test suite):

    python3 scripts/adversarial-sweep.py --ferrolm target/release/ferrolm \
        --quantize target/release/quantize --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        [--work DIR] [--seed N] [--quick] [--jobs 2] [--hf-tokenizer models/hf/smollm2-135m]

What it does (everything is made from --model and, for part 3, the tokenizer files of a Hugging
Face checkpoint; nothing is downloaded):

1. GGUF files (~270): a "mini" model is derived from the real one (its full metadata and
   vocabulary, 2 blocks of width 64, ~5 MB), then mutated field by field with a GGUF v3 parser:
   magic/version, hostile tensor/kv counts, key/string/array lengths (0, 2^32, 2^63, ...), type
   ids, dims (0, huge, overflowing product), tensor offsets (misaligned, beyond the file, 2^64-1),
   truncations, duplicate keys and tensors, general.alignment, architecture, hyperparameters,
   shortened vocab arrays, NaN weights, seeded random byte flips; plus truncated copies of the
   real model. Each file goes through `ferrolm inspect F`, `inspect F --json`,
   `run -m F -p hi -n 2 -t 1`, `tokenize -m F -p hi` and `quantize F OUT Q8_0 -t 1`.
2. Hugging Face checkpoints (~80): a tiny F16 Llama (width 64) with hostile config.json values,
   broken safetensors headers/offsets/dtypes, missing tensors, FIFOs, directories and symlinks in
   place of files, broken shard indexes and tokenizers. Each goes through `quantize DIR OUT Q8_0`.
3. ~100 bad command lines (numbers, llama.cpp flags, special files as -m/-f).
4. Outputs that are not regular files (FIFO, a copy of /dev/null's device, symlinks, an attacker's
   symlink at the temp name), SIGINT/SIGTERM/SIGHUP during a conversion, and (as root) a full
   20 MB tmpfs as the output directory.

Every run has a timeout (20 s), RLIMIT_AS 4 GiB and RLIMIT_FSIZE 2 GiB, and its peak RSS is
taken from wait4. Categories: ok, error (clean: non-zero exit, a one-line `error...`),
UNCLEAR (failed without such a line), ACCEPTED (a file known to be invalid ran or converted
fine; informational), and the defects PANIC, HANG, CRASH, OOM (allocation failure, a resource
limit, or peak RSS > 4x the input + 200 MB) and PARTIAL (an output or `.part` file left after a
failure, an existing/non-regular target replaced, or a conversion that went on after SIGINT/
SIGTERM and exited 0 with its output). Prints counts and every non-clean case;
files of failing cases are kept under WORK/keep/. Exit status 1 if any defect was found.

Time: ~1-2 min with release binaries on 2 cores (--quick: ~30 s), several times that with debug
builds; disk: < 100 MB in WORK (one case file at a time per job, kept ones under WORK/keep/).
"""
import argparse
import json
import os
import random
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

MIB, GIB = 1 << 20, 1 << 30
AS_LIMIT, FSIZE_LIMIT, TIMEOUT = 4 * GIB, 2 * GIB, 20.0
DEFECTS = ("PANIC", "HANG", "CRASH", "OOM", "PARTIAL")
U64, U32 = (1 << 64) - 1, (1 << 32) - 1
RUN = "run"  # a GGUF case that only `run` should refuse (see gguf_cases)
RQ = ("--allow-requantize",)  # the GGUF inputs here are quantized

# ----------------------------------------------------------------------------------------------
# GGUF v3: parse, rebuild with the byte offset of every count/length/type/offset field.
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q",
          11: "<q", 12: "<d"}
BLOCK = {0: (1, 4), 1: (1, 2), 3: (32, 20), 8: (32, 34)}  # F32, F16, Q4_1, Q8_0: (elems, bytes)


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def get(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.get("<Q")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos])

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.get("<I"), self.get("<Q")
            return (et, [self.value(et) for _ in range(n)])
        return self.get(SCALAR[t])


def enc_value(t, v):
    if t == 8:
        return struct.pack("<Q", len(v)) + v
    if t == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(enc_value(et, x) for x in items)
    return struct.pack(SCALAR[t], v)


class Gguf:
    """kvs: [key, type, value, cached encoding]; tensors: [name, dims, type, offset]."""

    def __init__(self, kvs, tensors, data, version=3):
        self.kvs, self.tensors, self.data, self.version = kvs, tensors, data, version

    @staticmethod
    def parse(buf):
        r = Reader(buf)
        assert r.get("<4s") == b"GGUF", "not a GGUF file"
        version, nt, nkv = r.get("<I"), r.get("<Q"), r.get("<Q")
        kvs = []
        for _ in range(nkv):
            key, t = r.string(), r.get("<I")
            start = r.pos
            v = r.value(t)
            kvs.append([key, t, v, bytes(buf[start:r.pos])])
        tensors = []
        for _ in range(nt):
            name, nd = r.string(), r.get("<I")
            dims = [r.get("<Q") for _ in range(nd)]
            tensors.append([name, dims, r.get("<I"), r.get("<Q")])
        return Gguf(kvs, tensors, b"", version), r.pos

    def clone(self):
        return Gguf([list(kv) for kv in self.kvs], [[n, list(d), t, o] for n, d, t, o in self.tensors],
                    self.data, self.version)

    def get(self, key):
        return next((kv[2] for kv in self.kvs if kv[0] == key.encode()), None)

    def set(self, key, t, v):
        for kv in self.kvs:
            if kv[0] == key.encode():
                kv[1:] = [t, v, None]
                return
        self.kvs.append([key.encode(), t, v, None])

    def drop(self, key=None, tensor=None):
        self.kvs = [kv for kv in self.kvs if kv[0] != (key or "").encode()]
        self.tensors = [ti for ti in self.tensors if ti[0] != (tensor or "").encode()]

    def alignment(self):
        a = self.get("general.alignment")
        return a if isinstance(a, int) and 0 < a < 1 << 16 else 32

    def build(self):
        """Returns (file bytes, {field tag: (offset, struct format)})."""
        b, f = bytearray(), {}

        def put(tag, fmt, v):
            f[tag] = (len(b), fmt)
            b.extend(struct.pack(fmt, v))
        b += b"GGUF"
        put("version", "<I", self.version)
        put("tensor_count", "<Q", len(self.tensors))
        put("kv_count", "<Q", len(self.kvs))
        for key, t, v, raw in self.kvs:
            k = key.decode(errors="replace")
            put(f"kv:{k}:keylen", "<Q", len(key))
            b.extend(key)
            put(f"kv:{k}:type", "<I", t)
            f[f"kv:{k}:value"] = (len(b), "<Q" if t == 8 else "<I")  # a string's length / array's type
            if t == 9:
                f[f"kv:{k}:arrlen"] = (len(b) + 4, "<Q")
                f[f"kv:{k}:elem0"] = (len(b) + 12, "<Q")
            b.extend(raw if raw is not None else enc_value(t, v))
        for name, dims, t, off in self.tensors:
            n = name.decode(errors="replace")
            put(f"ti:{n}:namelen", "<Q", len(name))
            b.extend(name)
            put(f"ti:{n}:ndims", "<I", len(dims))
            for i, d in enumerate(dims):
                put(f"ti:{n}:dim{i}", "<Q", d)
            put(f"ti:{n}:type", "<I", t)
            put(f"ti:{n}:offset", "<Q", off)
        f["header_end"] = (len(b), None)
        b.extend(b"\0" * (-len(b) % self.alignment()))
        f["data_start"] = (len(b), None)
        return bytes(b) + self.data, f


def tensor_bytes(dims, t):
    n = 1
    for d in dims:
        n *= d
    elems, size = BLOCK[t]
    return n // elems * size


def make_mini(real, seed):
    """The real model's metadata and vocabulary with 2 blocks of width 64 and seeded weights."""
    rng = random.Random(seed)
    g = real.clone()
    arch = g.get("general.architecture").decode()
    for k, v in [("block_count", 2), ("embedding_length", 64), ("feed_forward_length", 128),
                 ("attention.head_count", 4), ("attention.head_count_kv", 2),
                 ("rope.dimension_count", 16), ("context_length", 512)]:
        g.set(f"{arch}.{k}", 4, v)
    n_vocab = len(g.get("tokenizer.ggml.tokens")[1])
    fill = {0: struct.pack("<f", 1.0),
            3: b"".join(struct.pack("<ee", 0.01, -0.08) + rng.randbytes(16) for _ in range(64)),
            8: b"".join(struct.pack("<e", 0.02) + rng.randbytes(32) for _ in range(64))}
    shapes = [("token_embd.weight", [64, n_vocab], 8)]
    for i in range(2):
        shapes += [(f"blk.{i}.attn_norm.weight", [64], 0), (f"blk.{i}.attn_q.weight", [64, 64], 3),
                   (f"blk.{i}.attn_k.weight", [64, 32], 3), (f"blk.{i}.attn_v.weight", [64, 32], 3),
                   (f"blk.{i}.attn_output.weight", [64, 64], 3),
                   (f"blk.{i}.ffn_gate.weight", [64, 128], 3), (f"blk.{i}.ffn_up.weight", [64, 128], 3),
                   (f"blk.{i}.ffn_down.weight", [128, 64], 3), (f"blk.{i}.ffn_norm.weight", [64], 0)]
    shapes.append(("output_norm.weight", [64], 0))
    data, g.tensors = bytearray(), []
    for name, dims, t in shapes:
        data.extend(b"\0" * (-len(data) % 32))
        g.tensors.append([name.encode(), dims, t, len(data)])
        n = tensor_bytes(dims, t)
        data.extend((fill[t] * (n // len(fill[t]) + 1))[:n])
    g.data = bytes(data)
    return g


# ----------------------------------------------------------------------------------------------
# Running one command: timeout, RLIMIT_AS/FSIZE, peak RSS, classification.
class Result:
    pass


# Each command runs under this helper, which forks it and reports its exit status and peak RSS.
# (A process exec'd straight from this big Python would inherit its peak RSS in ru_maxrss.)
HELPER = r"""
import os, resource, signal, sys
fd, limit_as, limit_fsize, cmd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
pid = os.fork()
if pid == 0:
    try:
        for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.execv(cmd[0], cmd)
    except OSError as e:
        os.write(2, f"sweep helper: cannot run {cmd[0]}: {e}\n".encode())
    os._exit(127)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, lambda n, _: os.kill(pid, n))
_, status, ru = os.wait4(pid, 0)
os.write(fd, f"{status} {ru.ru_maxrss} {pid}".encode())
"""


def execute(argv, timeout=TIMEOUT, signal_after=None, stdin=None):
    """Runs argv (standard input: the file stdin, else /dev/null); signal_after=(seconds, signum)
    sends that signal to it once."""
    r = Result()
    r.argv, r.timed_out, r.sent = [a if isinstance(a, bytes) else str(a) for a in argv], False, None
    rfd, wfd = os.pipe()
    with tempfile.TemporaryFile() as err, open(stdin or os.devnull, "rb") as inp:
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-I", "-S", "-c", HELPER, str(wfd), str(AS_LIMIT),
                              str(FSIZE_LIMIT), *r.argv], stdin=inp,
                             stdout=subprocess.DEVNULL, stderr=err, pass_fds=(wfd,), start_new_session=True)
        os.close(wfd)

        def kill():
            r.timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def send():
            r.sent = signal_after[1]
            p.send_signal(signal_after[1])
        timers = [threading.Timer(timeout, kill)] + ([threading.Timer(signal_after[0], send)] if signal_after else [])
        for tm in timers:
            tm.start()
        p.wait()
        for tm in timers:
            tm.cancel()
        r.secs = time.monotonic() - t0
        with os.fdopen(rfd, "rb") as f:
            report = f.read().split()
        code, r.rss, r.pid = (os.waitstatus_to_exitcode(int(report[0])), int(report[1]) * 1024, int(report[2])) \
            if report else (p.returncode, 0, None)
        r.rc, r.sig = (code, None) if code >= 0 else (None, -code)
        err.seek(0)
        r.stderr = err.read(1 << 20).decode(errors="replace")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    r.last = lines[-1] if lines else ""
    r.errline = next((ln for ln in reversed(lines) if ln.startswith(("error", "quantize: error", "Error"))), "")
    return r


def classify(r, input_size):
    """Category and a short reason for one finished run."""
    if r.timed_out:
        return "HANG", f"killed after {TIMEOUT:.0f} s"
    if "panicked" in r.stderr or "RUST_BACKTRACE" in r.stderr:
        return "PANIC", next(ln for ln in r.stderr.splitlines() if "panicked" in ln or "RUST_BACKTRACE" in ln)
    if "memory allocation of" in r.stderr or r.sig in (signal.SIGXFSZ, signal.SIGKILL):
        return "OOM", r.last or f"signal {r.sig}"
    if r.sig and r.sig != r.sent:
        return "CRASH", f"{signal.Signals(r.sig).name}: {r.last}"
    if r.rss > 4 * input_size + 200 * MIB:
        return "OOM", f"peak RSS {r.rss / MIB:.0f} MiB for a {input_size / MIB:.1f} MiB input"
    if r.rc == 0:
        return "ok", ""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    clap = lines and lines[-1].startswith("For more information")
    if r.errline and (clap or lines[-1] == r.errline) and len(lines) <= 8:
        return "error", r.errline
    if r.rc == 2 and any(ln.startswith("Usage:") for ln in lines):
        return "error", "(usage printed)"
    return "UNCLEAR", f"exit {r.rc}: {r.last[:200]!r} ({len(lines)} stderr lines)"


def leftovers(d, keep=()):
    return sorted(n for n in os.listdir(d) if n not in keep)


# ----------------------------------------------------------------------------------------------
class Sweep:
    def __init__(self, a):
        self.a, self.results, self.lock = a, [], threading.Lock()
        self.work = os.path.abspath(a.work)
        shutil.rmtree(self.work, ignore_errors=True)
        for d in ("cases", "out", "keep", "misc"):
            os.makedirs(os.path.join(self.work, d))
        self.ferrolm, self.quantize = a.ferrolm, a.quantize

    def record(self, section, case, r, cat, why, path=None):
        with self.lock:
            self.results.append(dict(section=section, case=case, cmd=r.argv, cat=cat, why=why,
                                     rss=r.rss, secs=r.secs, stderr=r.stderr[-600:]))
            if cat in DEFECTS + ("UNCLEAR",) and path and os.path.exists(path):
                dst = os.path.join(self.work, "keep", os.path.basename(path))
                if not os.path.exists(dst):
                    shutil.copytree(path, dst, symlinks=True, copy_function=copy_keeping_fifos) \
                        if os.path.isdir(path) else shutil.copy(path, dst)

    def quantize_into(self, section, case, src, size, extra=(), expect_fail=False, ftype="Q8_0"):
        """quantize SRC into a fresh directory; checks that a failure leaves nothing behind."""
        d = tempfile.mkdtemp(dir=os.path.join(self.work, "out"))
        out = os.path.join(d, "out.gguf")
        r = execute([self.quantize, src, out, ftype, "-t", "1", *extra])
        cat, why = classify(r, size)
        left = leftovers(d)
        if cat not in DEFECTS:
            if r.rc != 0 and left:
                cat, why = "PARTIAL", f"left {left} after: {r.errline or r.last}"
            elif r.rc == 0 and left != ["out.gguf"]:
                cat, why = "PARTIAL", f"success but the directory holds {left}"
            elif r.rc == 0 and expect_fail:
                cat, why = "ACCEPTED", "converted a file known to be invalid"
        shutil.rmtree(d, ignore_errors=True)
        self.record(section, case, r, cat, why, src)
        return cat

    # -- 1. GGUF files --------------------------------------------------------------------------
    def gguf_cases(self):
        real_path = self.a.model
        with open(real_path, "rb") as f:
            head = f.read(64 * MIB)
        real, real_hdr = Gguf.parse(head)
        mini = make_mini(real, self.a.seed)
        base, fld = mini.build()
        self.mini_bytes = base
        rng = random.Random(self.a.seed)
        # (name, a function returning the bytes or (file, length to copy), expect_fail): True for a
        # file that is not valid GGUF (every tool should refuse it), RUN for a valid GGUF file that
        # is not a valid model (`run` should refuse it), False when either outcome is fine.
        cases = []

        def patch(name, tag, v, fail=True):
            def make():
                off, fmt = fld[tag]
                b = bytearray(base)
                struct.pack_into(fmt, b, off, v & ((1 << 8 * struct.calcsize(fmt)) - 1))
                return b
            cases.append((name, make, fail))

        def sem(name, fn, fail=RUN):
            def make():
                g = mini.clone()
                fn(g)
                return g.build()[0]
            cases.append((name, make, fail))

        for m in (b"GGUG", b"FUGG", b"\0\0\0\0"):
            cases.append((f"magic={m!r}", lambda m=m: m + base[4:], True))
        for v in (0, 1, 2, 4, U32, 0x03000000):
            patch(f"version={v}", "version", v, fail=v != 2)
        nt, nkv = len(mini.tensors), len(mini.kvs)
        for tag, n in (("tensor_count", nt), ("kv_count", nkv)):
            for v in (0, n - 1, n + 1, 1 << 31, (1 << 32) + n, 1 << 63, U64):
                patch(f"{tag}={v}", tag, v, fail=RUN if (tag, v) == ("tensor_count", n - 1) else True)
        for key in ("general.architecture", "llama.block_count", "tokenizer.ggml.tokens", "tokenizer.chat_template"):
            for v in (0, 1 << 32, 1 << 63, U64):
                patch(f"{key}: key length={v}", f"kv:{key}:keylen", v)
            for v in (13, 255, U32, 9 if key != "tokenizer.ggml.tokens" else 8):
                patch(f"{key}: value type={v}", f"kv:{key}:type", v)
        for key in ("general.architecture", "tokenizer.chat_template"):
            for v in (0, 1 << 32, 1 << 63, U64, len(base)):
                patch(f"{key}: string length={v}", f"kv:{key}:value", v)
        for key, n in (("tokenizer.ggml.tokens", 0), ("tokenizer.ggml.merges", 0), ("tokenizer.ggml.token_type", 0)):
            n = len(mini.get(key)[1])
            for v in (0, 1, n - 1, n + 1, 1 << 32, 1 << 61, 1 << 63, U64):
                patch(f"{key}: array length={v}", f"kv:{key}:arrlen", v)
            for v in (9, 13, 12, U32):
                patch(f"{key}: element type={v}", f"kv:{key}:value", v)
        for v in (1 << 32, 1 << 63, U64, len(base)):
            patch(f"tokens[0] string length={v}", "kv:tokenizer.ggml.tokens:elem0", v)
        for tname in ("token_embd.weight", "blk.0.attn_q.weight"):
            for v in (0, 1 << 63, U64):
                patch(f"{tname}: name length={v}", f"ti:{tname}:namelen", v)
            for v in (0, 3, 5, U32):
                patch(f"{tname}: n_dims={v}", f"ti:{tname}:ndims", v)
            for v in (0, 1, 1 << 32, 1 << 63, U64):
                patch(f"{tname}: dim0={v}", f"ti:{tname}:dim0", v, fail=RUN if v < 2 else True)
            for v in (1, 4, 5, 12, 31, 39, 40, 1000, U32):
                patch(f"{tname}: ggml type={v}", f"ti:{tname}:type", v)
            o = next(t[3] for t in mini.tensors if t[0] == tname.encode())
            for v in (o + 1, o + 32, len(mini.data), 1 << 40, 1 << 63, U64, U64 - 31):
                patch(f"{tname}: offset={v}", f"ti:{tname}:offset", v)
        patch("blk.0.attn_k overlaps attn_q", "ti:blk.0.attn_k.weight:offset", mini.tensors[2][3])
        for n, dims in (("product 2^64", [1 << 32, 1 << 32]), ("product 2^64+", [1 << 16] * 4),
                        ("2^62 x 4", [1 << 62, 4]), ("[0, V]", [0, 49152]), ("[64, V-1]", [64, 49151]),
                        ("[64, V+10]", [64, 49162]), ("5 dims", [64, 1, 1, 1, 49152]), ("1 dim", [64 * 49152])):
            sem(f"token_embd dims {n}", lambda g, d=dims: g.tensors[0].__setitem__(1, d),
                fail=RUN if n in ("[64, V-1]", "1 dim") else True)
        sem("blk.0.attn_q dims [64,63]", lambda g: g.tensors[2].__setitem__(1, [64, 63]), fail=True)
        sem("all offsets 0", lambda g: [t.__setitem__(3, 0) for t in g.tensors], fail=True)
        sem("duplicate general.architecture=gpt2", lambda g: g.kvs.insert(1, [b"general.architecture", 8, b"gpt2", None]), fail=True)
        sem("duplicate vocab (shorter copy)", lambda g: g.kvs.append([b"tokenizer.ggml.tokens", 9, (8, [b"a"] * 10), None]), fail=True)
        sem("duplicate tensor name", lambda g: g.tensors[3].__setitem__(0, g.tensors[2][0]), fail=True)
        sem("extra tensor overlapping output_norm", lambda g: g.tensors.append([b"blk.0.bogus.weight", [64], 0, g.tensors[-1][3]]), fail=True)
        sem("missing token_embd", lambda g: g.drop(tensor="token_embd.weight"))
        sem("missing blk.1.ffn_down", lambda g: g.drop(tensor="blk.1.ffn_down.weight"))
        sem("missing output_norm", lambda g: g.drop(tensor="output_norm.weight"))
        for t, v in ((4, 0), (4, 3), (4, 1), (4, 4096), (4, 1 << 31), (4, U32), (10, 32), (5, -1), (8, b"32"), (6, 32.0)):
            # The offsets are multiples of 256 (not of 4096): larger alignments misalign them.
            sem(f"general.alignment={v!r} (type {t})", lambda g, t=t, v=v: g.set("general.alignment", t, v),
                fail=(t, v) not in ((4, 1), (10, 32)))
        for v in (b"gpt2", b"LLAMA", b"", b"llama\0", b"qwen2", b"bert", b"x" * 10000, b"\xff\xfe"):
            sem(f"general.architecture={v[:12]!r}", lambda g, v=v: g.set("general.architecture", 8, v),
                fail=v != b"llama\0" and RUN)  # quantize keeps architectures ferrolm does not run
        sem("general.architecture as u32", lambda g: g.set("general.architecture", 4, 7))
        sem("no general.architecture", lambda g: g.drop("general.architecture"))
        hyper = [("block_count", (0, 1, 3, U32)), ("embedding_length", (0, 63, 65, U32)),
                 ("feed_forward_length", (0, 1 << 31)), ("attention.head_count", (0, 3, 64, U32)),
                 ("attention.head_count_kv", (0, 3, 8)), ("rope.dimension_count", (0, 15, 1 << 31)),
                 ("context_length", (0, 1, U32)), ("vocab_size", (0, 10, U32))]
        for k, vals in hyper:
            for v in vals:
                sem(f"llama.{k}={v}", lambda g, k=k, v=v: g.set(f"llama.{k}", 4, v),
                    fail=k not in ("context_length", "vocab_size") and RUN)
            sem(f"llama.{k} as i32 -1", lambda g, k=k: g.set(f"llama.{k}", 5, -1),
                fail=k not in ("context_length", "vocab_size") and RUN)
            sem(f"no llama.{k}", lambda g, k=k: g.drop(f"llama.{k}"), fail=k not in ("vocab_size", "rope.dimension_count", "context_length", "attention.head_count_kv") and RUN)
        for k in ("attention.layer_norm_rms_epsilon", "rope.freq_base"):
            for v in (float("nan"), -1.0, float("inf"), 0.0):
                sem(f"llama.{k}={v}", lambda g, k=k, v=v: g.set(f"llama.{k}", 6, v), fail=False)
        sem("block_count as u64 2^40", lambda g: g.set("llama.block_count", 10, 1 << 40))
        tok = mini.get("tokenizer.ggml.tokens")[1]
        for n in (len(tok) - 1, 100, 0):
            sem(f"tokens shortened to {n}", lambda g, n=n: g.set("tokenizer.ggml.tokens", 9, (8, tok[:n])))
        sem("token_type shortened", lambda g: g.set("tokenizer.ggml.token_type", 9, (5, [1] * 100)))
        sem("token_type values 99", lambda g: g.set("tokenizer.ggml.token_type", 9, (5, [99] * len(tok))), fail=False)
        sem("token_type as strings", lambda g: g.set("tokenizer.ggml.token_type", 9, (8, [b"x"] * len(tok))))
        for n, m in (("no space", [b"abc"]), ("only space", [b" "]), ("empty", [b""]), ("unknown", [b"zzq yyq"]),
                     ("none", []), ("3 parts", [b"a b c"])):
            sem(f"merges: {n}", lambda g, m=m: g.set("tokenizer.ggml.merges", 9, (8, m + mini.get("tokenizer.ggml.merges")[1][:50])), fail=False)
        sem("tokens: invalid UTF-8", lambda g: g.set("tokenizer.ggml.tokens", 9, (8, [b"\xff\xfe"] + tok[1:])), fail=False)
        sem("tokens: all the same", lambda g: g.set("tokenizer.ggml.tokens", 9, (8, [b"a"] * len(tok))), fail=False)
        sem("tokens: all empty", lambda g: g.set("tokenizer.ggml.tokens", 9, (8, [b""] * len(tok))), fail=False)
        sem("tokens as u32 array", lambda g: g.set("tokenizer.ggml.tokens", 9, (4, list(range(len(tok))))))
        sem("no tokenizer.ggml.tokens", lambda g: g.drop("tokenizer.ggml.tokens"))
        for k, v in (("bos_token_id", U32), ("bos_token_id", len(tok)), ("eos_token_id", len(tok) + 5),
                     ("unknown_token_id", U32), ("padding_token_id", 1 << 31)):
            sem(f"tokenizer.ggml.{k}={v}", lambda g, k=k, v=v: g.set(f"tokenizer.ggml.{k}", 4, v), fail=False)
        for v in (b"llama", b"bert", b"unknown", b"", b"none", b"t5"):
            sem(f"tokenizer.ggml.model={v!r}", lambda g, v=v: g.set("tokenizer.ggml.model", 8, v), fail=v in (b"unknown", b"") and RUN)
        for v in (b"not-a-pre", b""):
            sem(f"tokenizer.ggml.pre={v!r}", lambda g, v=v: g.set("tokenizer.ggml.pre", 8, v), fail=False)
        sem("no tokenizer.ggml.model", lambda g: g.drop("tokenizer.ggml.model"))
        sem("chat_template '{% for %}'", lambda g: g.set("tokenizer.chat_template", 8, b"{% for %}"), fail=False)
        sem("weights all 0xFF (NaN scales)", lambda g: setattr(g, "data", b"\xff" * len(g.data)), fail=False)
        sem("weights all zero", lambda g: setattr(g, "data", b"\0" * len(g.data)), fail=False)
        sem("data section empty", lambda g: setattr(g, "data", b""), fail=True)
        hdr_end, data_start = fld["header_end"][0], fld["data_start"][0]
        tok_off = fld["kv:tokenizer.ggml.tokens:elem0"][0]
        for n in sorted({0, 3, 4, 7, 8, 15, 16, 23, 24, 30, 40, tok_off - 3, tok_off + 5, tok_off + 100_000,
                         hdr_end - 500, hdr_end - 9, hdr_end - 1, hdr_end, data_start, data_start + 1,
                         data_start + len(mini.data) // 2, len(base) - 1}):
            cases.append((f"mini truncated at {n}", lambda n=n: base[:n], n < len(base)))
        for i in range(40):  # seeded random flips: the first 4 KB, the vocabulary, the tensor infos
            region = [(0, 4096), (4096, hdr_end - 20_000), (hdr_end - 20_000, data_start)][i % 3]
            flips = [(rng.randrange(*region), rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)]))
                     for _ in range(rng.randint(1, 4))]

            def make(flips=flips):
                b = bytearray(base)
                for at, v in flips:
                    b[at] = v
                return b
            cases.append((f"random flips #{i} at {[at for at, _ in flips]}", make, False))
        # The real model: as it is (a baseline) and truncated copies.
        size = os.path.getsize(real_path)
        for n in (size, 24, 1000, real_hdr // 2, real_hdr, real_hdr + 10, real_hdr + 2 * MIB, size - 1):
            cases.append((f"real model truncated at {n}" if n < size else "real model (baseline)",
                          (real_path, n), n < size))
        return cases

    def run_gguf_case(self, idx, name, content, fail):
        path = os.path.join(self.work, "cases", f"gguf-{idx:03d}.gguf")
        if isinstance(content, tuple):
            copy_prefix(*content, path)
        else:
            open(path, "wb").write(content())
        size = os.path.getsize(path)
        fl = self.ferrolm
        for argv in ([fl, "inspect", path], [fl, "inspect", path, "--json"],
                     [fl, "run", "-m", path, "-p", "hi", "-n", "2", "-t", "1", "-s", "1"],
                     [fl, "tokenize", "-m", path, "-p", "hi"]):
            r = execute(argv)
            cat, why = classify(r, size)
            if cat == "ok" and fail and argv[1] == "run":  # RUN or True
                cat, why = "ACCEPTED", "ran a file known to be invalid"
            self.record("gguf", name, r, cat, why, path)
        self.quantize_into("gguf", name, path, size, extra=RQ, expect_fail=fail is True)
        os.unlink(path)

    # -- 2. Hugging Face checkpoints --------------------------------------------------------------
    def hf_cases(self):
        tokdir = self.a.hf_tokenizer
        if not os.path.isfile(os.path.join(tokdir, "tokenizer.json")):
            print(f"note: {tokdir}/tokenizer.json not found: checkpoint cases skipped")
            return []
        base = os.path.join(self.work, "hf-base")
        os.makedirs(base)
        for n in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if os.path.exists(os.path.join(tokdir, n)):
                shutil.copy(os.path.join(tokdir, n), base)
        vocab = len(json.load(open(os.path.join(base, "tokenizer.json")))["model"]["vocab"])
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
               "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
               "num_hidden_layers": 2, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
               "rope_theta": 10000.0, "vocab_size": vocab, "tie_word_embeddings": True,
               "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"}
        rng = random.Random(self.a.seed)
        pattern = b"".join(struct.pack("<e", rng.uniform(-0.1, 0.1)) for _ in range(4096))
        shapes = [("model.embed_tokens.weight", [vocab, 64]), ("model.norm.weight", [64])]
        for i in range(2):
            p = f"model.layers.{i}."
            shapes += [(p + "input_layernorm.weight", [64]), (p + "post_attention_layernorm.weight", [64]),
                       (p + "self_attn.q_proj.weight", [64, 64]), (p + "self_attn.k_proj.weight", [32, 64]),
                       (p + "self_attn.v_proj.weight", [32, 64]), (p + "self_attn.o_proj.weight", [64, 64]),
                       (p + "mlp.gate_proj.weight", [128, 64]), (p + "mlp.up_proj.weight", [128, 64]),
                       (p + "mlp.down_proj.weight", [64, 128])]

        def st(hdr_fn=None, raw_header=None, hlen=None, drop=(), tensors=None, data_fn=None, text_fn=None):
            """safetensors bytes; hdr_fn edits the header dict, text_fn its JSON, data_fn the data."""
            hdr, data = {"__metadata__": {"format": "pt"}}, bytearray()
            for name, shape in (tensors if tensors is not None else shapes):
                if name in drop:
                    continue
                n = 2
                for d in shape:
                    n *= d
                hdr[name] = {"dtype": "F16", "shape": shape, "data_offsets": [len(data), len(data) + n]}
                data.extend((pattern * (n // len(pattern) + 1))[:n])
            if hdr_fn:
                hdr_fn(hdr)
            h = raw_header if raw_header is not None else json.dumps(hdr).encode()
            h = text_fn(h) if text_fn else h
            h += b" " * (-len(h) % 8)
            data = data_fn(bytes(data)) if data_fn else bytes(data)
            return struct.pack("<Q", hlen if hlen is not None else len(h)) + h + data

        def w(d, name, content):
            p = os.path.join(d, name)
            if os.path.lexists(p):
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
            if content is None:
                return
            if callable(content):
                content = content()
            if isinstance(content, str) and content.startswith(("fifo:", "dir:", "link:")):
                kind, _, arg = content.partition(":")
                os.mkfifo(p) if kind == "fifo" else os.mkdir(p) if kind == "dir" else os.symlink(arg, p)
            else:
                open(p, "wb").write(content if isinstance(content, bytes) else json.dumps(content).encode())

        w(base, "config.json", cfg)
        w(base, "model.safetensors", st())
        cases = []

        def case(name, files, fail=True):
            cases.append((name, files, fail))

        def conf(**kw):
            return {"config.json": {**cfg, **kw}}
        case("valid tiny checkpoint (baseline)", {}, False)
        for k, vals in [("num_hidden_layers", [1 << 40, -1, "2", 0, 3, 1.5, None, 1 << 64, 1e300]),
                        ("vocab_size", [1 << 40, 0, -1, vocab - 1, 1e20]),
                        ("num_attention_heads", [0, 3, -4, 1 << 40]), ("num_key_value_heads", [0, 3, 8]),
                        ("hidden_size", [0, 1 << 62, 63]), ("intermediate_size", [0, 1 << 40]),
                        ("head_dim", [0, 1 << 40, 7]), ("rms_norm_eps", [-1, "x"]), ("rope_theta", [0, -1]),
                        ("max_position_embeddings", [-1, 0]),
                        ("architectures", [[], ["GPT2LMHeadModel"], "LlamaForCausalLM", [1]]),
                        ("rope_scaling", [{"rope_type": "llama3", "factor": 0, "original_max_position_embeddings": 0,
                                           "low_freq_factor": 0, "high_freq_factor": 0},
                                          {"type": "linear", "factor": -1}, {"type": "yarn", "factor": "x"}, "s"]),
                        ("tie_word_embeddings", [False, "yes"])]:
            for v in vals:
                case(f"config {k}={json.dumps(v)[:40]}", conf(**{k: v}),
                     fail=not (k in ("rms_norm_eps", "rope_theta", "max_position_embeddings") and isinstance(v, int)))
        raw_cfg = json.dumps(cfg)
        for name, content in [("rms_norm_eps NaN literal", raw_cfg.replace("1e-05", "NaN").encode()),
                              ("rms_norm_eps Infinity literal", raw_cfg.replace("1e-05", "Infinity").encode()),
                              ("num_hidden_layers 1e999", raw_cfg.replace('"num_hidden_layers": 2', '"num_hidden_layers": 1e999').encode()),
                              ("not JSON", b"{not json"), ("empty", b""), ("top-level array", b"[1,2]"),
                              ("100000-deep nesting", b"[" * 100000 + b"]" * 100000),
                              ("BOM prefix", b"\xef\xbb\xbf" + raw_cfg.encode()),
                              ("5 MB of spaces", b" " * (5 * MIB) + raw_cfg.encode()),
                              ("a directory", "dir:"), ("a FIFO", "fifo:"), ("a symlink loop", "link:config.json"),
                              ("missing", None)]:
            case(f"config.json: {name}", {"config.json": content}, fail=name != "BOM prefix" and "spaces" not in name)
        case("config without architectures", {"config.json": {k: v for k, v in cfg.items() if k != "architectures"}})
        S = "model.safetensors"
        q0 = "model.layers.0.self_attn.q_proj.weight"
        for name, content in [
                ("header length 2^63", lambda: st(hlen=1 << 63)), ("header length 2^64-1", lambda: st(hlen=U64)),
                ("header length 0", lambda: st(hlen=0)), ("header length past the file", lambda: st(hlen=20 * MIB)),
                ("header length cuts the JSON", lambda: st(hlen=40)), ("7-byte file", b"\x10" * 7), ("empty file", b""),
                ("header JSON truncated", lambda: st(raw_header=b'{"a": {"dtype": "F16", "sha')),
                ("header is an array", lambda: st(raw_header=b"[1, 2, 3]")), ("header invalid UTF-8", lambda: st(raw_header=b'{"\xff\xfe": 1}')),
                ("header 100000-deep", lambda: st(raw_header=b"[" * 100000 + b"]" * 100000)),
                ("dtype F8_E4M3", lambda: st(lambda h: h[q0].update(dtype="F8_E4M3"))),
                ("dtype I64", lambda: st(lambda h: h[q0].update(dtype="I64"))), ("dtype unknown", lambda: st(lambda h: h[q0].update(dtype="BF32"))),
                ("dtype F32 with F16-sized data", lambda: st(lambda h: h[q0].update(dtype="F32"))),
                ("shape larger than its bytes", lambda: st(lambda h: h[q0].update(shape=[64, 128]))),
                ("shape smaller than its bytes", lambda: st(lambda h: h[q0].update(shape=[64, 32]))),
                ("shape product overflows", lambda: st(lambda h: h[q0].update(shape=[1 << 32, 1 << 32, 1 << 32]))),
                ("shape negative", lambda: st(lambda h: h[q0].update(shape=[-1, 64]))),
                ("shape of strings", lambda: st(lambda h: h[q0].update(shape=["64", "64"]))),
                ("data_offsets beyond the file", lambda: st(lambda h: h[q0].update(data_offsets=[1 << 40, (1 << 40) + 8192]))),
                ("data_offsets reversed", lambda: st(lambda h: h[q0].update(data_offsets=h[q0]["data_offsets"][::-1]))),
                ("data_offsets 2^64-1", lambda: st(lambda h: h[q0].update(data_offsets=[U64 - 8191, U64]))),
                ("data_offsets overlapping", lambda: st(lambda h: h["model.layers.0.self_attn.o_proj.weight"].update(data_offsets=h[q0]["data_offsets"]))),
                ("data truncated", lambda: st(data_fn=lambda d: d[:len(d) // 2])),
                ("missing embed_tokens", lambda: st(drop=("model.embed_tokens.weight",))),
                ("missing layer 1 down_proj", lambda: st(drop=("model.layers.1.mlp.down_proj.weight",))),
                ("extra layer 5 tensor", lambda: st(tensors=shapes + [("model.layers.5.self_attn.q_proj.weight", [64, 64])])),
                ("extra unknown tensor", lambda: st(tensors=shapes + [("foo.bar", [4])])),
                ("k_proj transposed", lambda: st(tensors=[(n, s[::-1] if "k_proj" in n else s) for n, s in shapes])),
                ("NaN/Inf weights", lambda: st(data_fn=lambda d: b"\x00\x7e\x00\x7c" * (len(d) // 4))),
                ("duplicate JSON key", lambda: st(text_fn=lambda t: b'{"%s": {"dtype": "F16", "shape": [1], '
                                                  b'"data_offsets": [0, 2]}, ' % q0.encode() + t[1:])),
                ("a directory", "dir:"), ("a FIFO", "fifo:"), ("symlink to /dev/zero", "link:/dev/zero"),
                ("a symlink loop", "link:model.safetensors"), ("missing", None)]:
            case(f"{S}: {name}", {S: content}, fail=name not in ("extra unknown tensor", "NaN/Inf weights", "duplicate JSON key"))
        half = [s for s in shapes if "layers.1" not in s[0]], [s for s in shapes if "layers.1" in s[0]]
        shard = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        wmap = {n: shard[0] for n, _ in half[0]} | {n: shard[1] for n, _ in half[1]}
        sharded = {S: None, shard[0]: st(tensors=half[0]), shard[1]: st(tensors=half[1])}
        for name, idx, extra, fail in [
                ("valid shards", {"weight_map": wmap}, {}, False),
                ("shard missing", {"weight_map": wmap}, {shard[1]: None}, True),
                ("shard path ../../../etc/passwd", {"weight_map": {**wmap, q0: "../../../../../../etc/passwd"}}, {}, True),
                ("shard path /dev/zero", {"weight_map": {**wmap, q0: "/dev/zero"}}, {}, True),
                ("shard is a FIFO", {"weight_map": wmap}, {shard[1]: "fifo:"}, True),
                ("tensor mapped to the wrong shard", {"weight_map": {**wmap, q0: shard[1]}}, {}, True),
                ("weight_map not an object", {"weight_map": [1]}, {}, True),
                ("index malformed", b"{", {}, True)]:
            case(f"index: {name}", {**sharded, "model.safetensors.index.json": idx, **extra}, fail)
        tok = json.load(open(os.path.join(base, "tokenizer.json")))
        for name, content in [("missing", None), ("malformed", b"{"), ("a FIFO", "fifo:"),
                              ("model type WordPiece", {**tok, "model": {**tok["model"], "type": "WordPiece"}}),
                              ("empty vocab", {**tok, "model": {**tok["model"], "vocab": {}}}),
                              ("merges of numbers", {**tok, "model": {**tok["model"], "merges": [1, 2]}})]:
            case(f"tokenizer.json: {name}", {"tokenizer.json": content})
        case("tokenizer_config.json malformed", {"tokenizer_config.json": b"{"})
        self.hf_base, self.hf_write = base, w
        return cases

    def run_hf_case(self, idx, name, files, fail):
        d = os.path.join(self.work, "cases", f"hf-{idx:03d}")
        os.makedirs(d)
        for n in os.listdir(self.hf_base):
            os.link(os.path.join(self.hf_base, n), os.path.join(d, n))  # never edited in place
        for n, content in files.items():
            self.hf_write(d, n, content)
        size = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d)
                   if os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n)))
        self.quantize_into("checkpoint", name, d, size, expect_fail=fail)
        shutil.rmtree(d, ignore_errors=True)

    # -- 3. Command lines --------------------------------------------------------------------------
    def cli_cases(self, mini_path):
        M, fl, q = mini_path, self.ferrolm, self.quantize
        misc = os.path.join(self.work, "misc")
        fifo, empty, loop = (os.path.join(misc, n) for n in ("fifo", "empty.txt", "loop"))
        os.mkfifo(fifo)
        open(empty, "w").close()
        open(os.path.join(misc, "hi.txt"), "w").write("hi\n")
        os.symlink(loop, loop)
        run = [fl, "run", "-m", M, "-t", "1", "-s", "1"]
        c = [run + ["-p", "hi", "-n", "2"]]  # baseline
        for flag, vals in [("-n", ["nan", "inf", "-2", "1e99", "", "99999999999999999999", "0"]),
                           ("-t", ["-1", "100000", "nan", "", "0"]), ("-s", ["-1", str(1 << 64), "nan"])]:
            for v in vals:  # in place of the value the others have
                opts = {"-n": "2", "-t": "1", "-s": "1", flag: v}
                c.append([fl, "run", "-m", M, "-p", "hi"] + [x for kv in opts.items() for x in kv])
        c += [run + ["-p", "hi", "-n", "-1", "-c", "16", "--ignore-eos"]]
        for flag, vals in [("-c", ["1", "-1", str(1 << 40), "100000000"]),
                           ("-b", ["0", "65537", "-1"]), ("--top-k", ["-5", "2147483648"]),
                           ("--top-p", ["nan", "-1", "2"]), ("--temp", ["nan", "-1", "inf"]), ("--min-p", ["2", "nan"]),
                           ("--repeat-penalty", ["0", "-1", "nan"]), ("--repeat-last-n", ["-1", str(1 << 40)]),
                           ("--frequency-penalty", ["nan"]), ("--presence-penalty", ["inf"]),
                           ("--cache-type", ["q4_0", ""]), ("--stop", [""])]:
            for v in vals:
                c.append(run + ["-p", "hi", "-n", "2", flag, v])
        c += [run + ["-p", "", "-n", "2"], run + ["-p", "hi", "-n", "40", "-c", "8", "--ignore-eos"],
              run + ["-p", "hi " * 30000, "-n", "1", "-c", "64"], run + ["-p", b"\xff\xfe", "-n", "1"],
              run + ["-f", "/dev/zero", "-n", "1"], run + ["-f", fifo, "-n", "1"], run + ["-f", misc, "-n", "1"],
              run + ["-f", "/nonexistent", "-n", "1"], run + ["-f", empty, "-n", "1"], run + ["-p", "hi", "-f", empty]]
        for extra in (["-ngl", "99"], ["-fa"], ["-fa", "on"], ["-cnv"], ["-hf", "x"], ["--mlock"], ["-ub", "0"],
                      ["-ctk", "q9"], ["-sys", "x"], ["--unknown-flag"], ["-x"], ["-p"], ["-m"]):
            c.append(run + ["-p", "hi", "-n", "1"] + extra)
        for m in ("/nonexistent.gguf", misc, fifo, "/dev/zero", "/dev/null", loop, "", M + "/"):
            c.append([fl, "run", "-m", m, "-p", "hi", "-n", "1", "-t", "1"])
            c.append([fl, "inspect", m])
        c += [[fl, "inspect"], [fl, "inspect", M, "--max-array", "-1"], [fl, "inspect", M, "--max-array", str(1 << 64)],
              [fl, "inspect", M, "--max-array", "0", "--json"]]
        for p in ("", b"\xff", "<|im_start|>" * 1000):
            c.append([fl, "tokenize", "-m", M, "-p", p])
        c += [[fl, "tokenize", "-m", M, "-f", "/dev/zero"], [fl, "tokenize", "-m", M, "-f", fifo]]
        for ids in ("1,2,3", "99999999", "-1", "4294967296", "abc", "", ",,,", "1," * 20000):
            c.append([fl, "detokenize", "-m", M, "--ids", ids])
        for extra in (["--ids", "1,2", "--top", "0"], ["--ids", "99999"], ["--ids", ""], ["-p", "hi", "--top", str(1 << 62)],
                      ["-p", "", "--json"]):
            c.append([fl, "eval", "-m", M, "-t", "1"] + extra)
        for f, ctx in (("/dev/zero", "8"), (empty, "8"), (fifo, "8"), (misc, "8"), (empty, "7"), (empty, "0")):
            c.append([fl, "perplexity", "-m", M, "-t", "1", "-f", f, "-c", ctx])
        for extra in (["-p", "0", "-n", "0"], ["-p", "-1"], ["-r", "0"], ["-r", "1001"], ["-o", "xml"], ["-b", "0"],
                      ["-c", "1", "-p", "512", "-n", "1"], ["-p", "1", "-n", str(1 << 40)]):
            c.append([fl, "bench", "-m", M, "-t", "1", "--no-bandwidth"] + extra + ([] if "-r" in extra else ["-r", "1"]))
        bombs = ['{% for i in range(100000000) %}{{ i }}{% endfor %}', '{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}',
                 '{{ "x" * 2000000000 }}', '{% for i in range(9999) %}{% for j in range(9999) %}{% for k in range(9999) %}'
                 'x{% endfor %}{% endfor %}{% endfor %}', '{% set ns = namespace(s="x" * 100000) %}{% for i in range(30) %}'
                 '{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}']
        for extra in ([], ["--system", ""], ["--chat-template", "{% for %}"], ["--chat-template-file", "/dev/zero"],
                      ["--chat-template-file", fifo], ["--chat-template", "x", "--chat-template-file", empty],
                      *(["--chat-template", b] for b in bombs)):
            c.append([fl, "chat", "-m", M, "-t", "1", "-n", "2"] + extra)  # standard input: "hi"
        c += [[fl, "nonexistent-subcommand"], [fl]]
        outs = []

        def qo():  # an output in a directory of its own, checked and removed after the run
            outs.append(os.path.join(misc, f"q{len(outs)}"))
            os.mkdir(outs[-1])
            return os.path.join(outs[-1], "q.gguf")
        for extra in (["Q9_9"], ["q8_0"], [""], ["Q8_0", "-t", "-1"], ["Q8_0", "-t", "100000"], ["Q8_0", "x"],
                      ["Q8_0", "--dry-run"], ["Q8_0", "--bogus"], ["Q8_0", "-t", "1"]):
            c.append([q, M, qo()] + extra + list(RQ))
        c += [[q, M, qo(), "Q8_0"], [q, "/nonexistent", qo(), "Q8_0"], [q, misc, qo(), "Q8_0"], [q, "/dev/zero", qo(), "Q8_0"],
              [q, fifo, qo(), "Q8_0"], [q, M, "/nonexistent-dir/o.gguf", "Q8_0", *RQ], [q, M, misc, "Q8_0", *RQ],
              [q, M, misc, "Q8_0", "-f", *RQ], [q], [fl, "quantize", M, qo(), "Q9_9"], [fl, "quantize"],
              [fl, "synth", "--shape", "nonexistent", "-o", qo()], [fl, "synth", "--type", "Q9", "-o", qo()]]
        return c

    def run_cli_case(self, argv, size):
        r = execute(argv, stdin=os.path.join(self.work, "misc", "hi.txt") if argv[1:2] == ["chat"] else None)
        cat, why = classify(r, size)
        outdir = next((os.path.dirname(a) for a in argv if isinstance(a, str) and a.endswith("/q.gguf")), None)
        if outdir:
            left = leftovers(outdir)
            if cat not in DEFECTS and left and (r.rc != 0 or "--dry-run" in argv or left != ["q.gguf"]):
                cat, why = "PARTIAL", f"left {left} after: {r.errline or r.last}"
            shutil.rmtree(outdir)
        self.record("cli", "command line", r, cat, why)

    # -- 4. Outputs, signals, a full file system ----------------------------------------------------
    def output_cases(self, mini_path):
        size = os.path.getsize(mini_path)
        for target in ("fifo", "chardev", "symlink-to-fifo", "symlink-to-file", "existing-no-force"):
            d = tempfile.mkdtemp(dir=os.path.join(self.work, "out"))
            out, victim = os.path.join(d, "out.gguf"), os.path.join(d, "victim")
            open(victim, "w").write("keep me")
            if target == "fifo":
                os.mkfifo(out)
            elif target == "chardev":
                try:
                    os.mknod(out, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # what /dev/null is
                except PermissionError:
                    print("note: cannot mknod a copy of /dev/null here (not root): case skipped")
                    continue
            elif target == "symlink-to-fifo":
                os.mkfifo(os.path.join(d, "fifo"))
                os.symlink("fifo", out)
            elif target == "symlink-to-file":
                os.symlink("victim", out)
            else:
                shutil.copy(victim, out)
            before = os.lstat(out)
            r = execute([self.quantize, mini_path, out, "Q8_0", "-t", "1", *RQ] + (["-f"] if "no-force" not in target else []))
            cat, why = classify(r, size)
            after = os.lstat(out) if os.path.lexists(out) else None
            parts = [n for n in os.listdir(d) if n.endswith(".part")]
            if cat not in DEFECTS:
                if parts:
                    cat, why = "PARTIAL", f"left {parts}"
                elif target in ("fifo", "chardev", "symlink-to-fifo") and (after is None or stat.S_IFMT(after.st_mode) != stat.S_IFMT(before.st_mode)):
                    cat, why = "PARTIAL", f"the {target} target was replaced by a regular file (as /dev/null would be)"
                elif target == "existing-no-force" and (r.rc == 0 or open(out).read() != "keep me"):
                    cat, why = "PARTIAL", "an existing output was replaced without --force"
            then = "missing" if after is None else "a symlink" if stat.S_ISLNK(after.st_mode) else \
                "a regular file" if stat.S_ISREG(after.st_mode) else "unchanged"
            self.record("outputs", f"output is a {target}", r, cat,
                        f"{why} [out.gguf is then {then}; victim {'intact' if open(victim).read() == 'keep me' else 'CHANGED'}]")
            shutil.rmtree(d, ignore_errors=True)
        # An attacker's symlink at the temp name `.out.gguf.PID-0.part`: the PID is predicted.
        d = tempfile.mkdtemp(dir=os.path.join(self.work, "out"))
        victim = os.path.join(self.work, "misc", "victim")
        open(victim, "w").write("keep me")
        last = int(open("/proc/sys/kernel/ns_last_pid").read())
        for pid in range(last + 1, last + 400):
            os.symlink(victim, os.path.join(d, f".out.gguf.{pid}-0.part"))
        r = execute([self.quantize, mini_path, os.path.join(d, "out.gguf"), "Q8_0", "-t", "1", *RQ])
        cat, why = classify(r, size)
        hit = r.pid is not None and last < r.pid < last + 400
        if cat not in DEFECTS and open(victim).read() != "keep me":
            cat, why = "PARTIAL", "wrote through a pre-created symlink at the temp name"
        why = f"{why} [the symlink at its temp name was {'in place' if hit else 'missed (pid not predicted)'}]"
        self.record("outputs", "temp name is a pre-created symlink", r, cat, why)
        shutil.rmtree(d, ignore_errors=True)

    def signal_cases(self, src, extra=()):
        """Signals during a conversion to F16, at fixed times and at fractions of its duration."""
        d = tempfile.mkdtemp(dir=os.path.join(self.work, "out"))
        argv = [self.quantize, src, os.path.join(d, "out.gguf"), "F16", *extra]
        t = execute(argv).secs
        shutil.rmtree(d)
        size = os.path.getsize(src) if os.path.isfile(src) else 0
        for signum, delay in ((signal.SIGINT, 0.02), (signal.SIGINT, 0.3), (signal.SIGTERM, 0.3),
                              (signal.SIGINT, t * 0.5), (signal.SIGTERM, t * 0.5), (signal.SIGHUP, t * 0.5),
                              (signal.SIGINT, t * 0.9)):
            d = tempfile.mkdtemp(dir=os.path.join(self.work, "out"))
            argv[2] = os.path.join(d, "out.gguf")
            r = execute(argv, timeout=delay + 5, signal_after=(delay, signum))
            cat, why = classify(r, size)
            left = leftovers(d)
            name = f"{os.path.basename(src)}: {signal.Signals(signum).name} after {delay:.2f} s (of {t:.2f} s)"
            if cat not in DEFECTS:
                if r.sent is None:
                    cat, why = "ok", "finished before the signal (nothing tested)"
                elif r.rc == 0 and r.secs - delay > 0.02:
                    cat, why = "PARTIAL", (f"ran on {r.secs - delay:.2f} s after the signal, then exited 0 "
                                           f"with the output written")
                elif r.rc == 0:
                    cat, why = "ok", "finished as the signal came (nothing tested)"
                elif left:
                    cat, why = "PARTIAL", f"left {left}"
                else:
                    how = r.rc if r.rc is not None else "by " + signal.Signals(r.sig).name
                    cat, why = "error", f"exit {how} in {r.secs:.2f} s, nothing left; {r.errline}"
            self.record("signals", name, r, cat, why)
            shutil.rmtree(d, ignore_errors=True)

    def full_fs_case(self, src):
        if os.geteuid() != 0:
            print("note: not root: the full file system case is skipped")
            return
        d = os.path.join(self.work, "tmpfs")
        os.makedirs(d)
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", d], capture_output=True, text=True)
        if m.returncode != 0:
            print(f"note: mount tmpfs failed ({m.stderr.strip()}): the full file system case is skipped")
            return
        try:
            size = os.path.getsize(src)
            for force in (False, True):
                existing = os.path.join(d, "existing.gguf")
                if force:
                    open(existing, "wb").write(b"keep me")
                out = existing if force else os.path.join(d, "out.gguf")
                r = execute([self.quantize, src, out, "Q8_0", "-t", "1", *RQ] + (["-f"] if force else []))
                cat, why = classify(r, size)
                left = leftovers(d, keep=("existing.gguf",) if force else ())
                if cat not in DEFECTS:
                    if r.rc == 0:
                        cat, why = "PARTIAL", "succeeded on a 20 MB file system?"
                    elif left:
                        cat, why = "PARTIAL", f"left {left}"
                    elif force and open(existing, "rb").read() != b"keep me":
                        cat, why = "PARTIAL", "the existing output was damaged"
                self.record("full-fs", f"20 MB tmpfs{' over an existing file (-f)' if force else ''}", r, cat, why)
                for n in os.listdir(d):
                    os.unlink(os.path.join(d, n))
        finally:
            subprocess.run(["umount", d])


def copy_keeping_fifos(src, dst):
    os.mkfifo(dst) if stat.S_ISFIFO(os.lstat(src).st_mode) else shutil.copy2(src, dst)


def copy_prefix(src, n, dst):
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while n > 0:
            k = os.copy_file_range(fi.fileno(), fo.fileno(), min(n, 64 * MIB))
            if k == 0:
                break
            n -= k


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ferrolm", required=True)
    ap.add_argument("--quantize", required=True)
    ap.add_argument("--model", required=True, help="a GGUF model (SmolLM2-135M-Instruct.Q4_1.gguf)")
    ap.add_argument("--hf-tokenizer", help="a checkpoint dir with tokenizer.json (default: models/hf/smollm2-135m next to --model)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ferrolm-sweep"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="every 4th case of parts 1-3")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    a.ferrolm, a.quantize, a.model = map(os.path.abspath, (a.ferrolm, a.quantize, a.model))
    a.hf_tokenizer = a.hf_tokenizer or os.path.join(os.path.dirname(a.model), "hf", "smollm2-135m")
    t0 = time.monotonic()
    s = Sweep(a)
    step = 4 if a.quick else 1
    gguf = s.gguf_cases()
    mini_path = os.path.join(s.work, "misc", "mini.gguf")
    open(mini_path, "wb").write(s.mini_bytes)
    hf = s.hf_cases()
    cli = s.cli_cases(mini_path)
    print(f"{len(gguf[::step])} GGUF files x 5 commands, {len(hf[::step])} checkpoints, {len(cli[::step])} command lines; work dir {s.work}")
    with ThreadPoolExecutor(a.jobs) as ex:
        futs = [ex.submit(s.run_gguf_case, i, *c) for i, c in enumerate(gguf[::step])]
        futs += [ex.submit(s.run_hf_case, i, *c) for i, c in enumerate(hf[::step])]
        futs += [ex.submit(s.run_cli_case, c, os.path.getsize(mini_path)) for c in cli[::step]]
        for i, f in enumerate(futs):
            f.result()
            if i % 50 == 49:
                print(f"  {i + 1}/{len(futs)} cases, {time.monotonic() - t0:.0f} s", flush=True)
    s.output_cases(mini_path)
    s.signal_cases(a.model, RQ)
    if os.path.isfile(os.path.join(a.hf_tokenizer, "model.safetensors")):
        s.signal_cases(a.hf_tokenizer)
    s.full_fs_case(a.model)
    report(s.results, time.monotonic() - t0)
    with open(os.path.join(s.work, "results.json"), "w") as f:
        json.dump(s.results, f, indent=1, default=repr)
    print(f"every run: {s.work}/results.json")
    sys.exit(1 if any(r["cat"] in DEFECTS for r in s.results) else 0)


def report(results, secs):
    cats = {}
    for r in results:
        cats.setdefault(r["cat"], []).append(r)
    print(f"\n{len(results)} runs in {secs:.0f} s: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(cats.items())))
    for cat in DEFECTS + ("UNCLEAR", "ACCEPTED"):
        if cat in cats:
            print(f"\n== {cat} ({len(cats[cat])})")
            for r in cats[cat]:
                cmd = shlex.join(x if isinstance(x, str) else repr(x) for x in r["cmd"])
                print(f"- [{r['section']}] {r['case']}: {r['why'][:300]}\n    {cmd[:300]}  ({r['secs']:.1f} s, {r['rss'] / MIB:.0f} MiB)")
    print("\n== outputs, signals, full file system (every run)")
    for r in results:
        if r["section"] in ("outputs", "signals", "full-fs"):
            print(f"- {r['cat']:7} {r['case']}: {r['why']}")
    peak = max(results, key=lambda r: r["rss"], default=None)
    if peak:
        print(f"\npeak RSS {peak['rss'] / MIB:.0f} MiB: [{peak['section']}] {peak['case']}")


if __name__ == "__main__":
    main()
