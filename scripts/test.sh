#!/usr/bin/env bash
# The whole test suite, as a fresh machine runs it (README's test command; CI runs it via .ci/run):
#
#   1. fetch the real models and the Brown corpus into models/ (sha256-verified, cached),
#      and build the Hugging Face test checkpoints from them;
#   2. make sure gguf-py (pip: gguf==0.19.0, for tests/gguf_py.rs), the openai client (pip:
#      openai==3.63.0, for the server test) and jsonschema (pip: jsonschema==4.26.0, the
#      validator of tests/json_schema.rs) are importable, and (as root) install Debian's
#      chromium for the chat page test;
#   3. check the checked-in C header is current (scripts/check-header.sh);
#   4. cargo test --workspace (x86-64; the test profile builds with opt-level 2), then the decoder's
#      generation and logits tests again with FERROLM_KERNELS=scalar, and the kernel properties and
#      (on a CPU with AVX-512 VNNI) the decoder tests with FERROLM_KERNELS=avx2, and on a CPU with
#      AVX-VNNI the kernel properties and (with AVX-512 too) the logits tests with FERROLM_KERNELS=avxvnni;
#   5. a short run of the gguf_reader fuzz target as a standalone driver (keeps fuzz/ building);
#   6. under qemu for aarch64 (scripts/test-aarch64.sh): the kernels' whole suite on three CPUs (i8mm,
#      dotprod, plain NEON) and the decoder's qemu_smoke tests on SmolLM2 (it says "skipped" and
#      exits 77, reported as SKIPPED, when the cross toolchain is absent:
#      scripts/install-aarch64.sh installs it).
#
# Setup (steps 1-2) stops at the first failure. The checks (steps 3-6) all run even when one fails,
# and the script ends with the list of failed ones and status 1; status 0 only when all passed.
# Most of the time is step 4 (the real-model tests); models are cached after the first run.
# Environment: FERROLM_TEST_FUZZ_SECONDS (default 20; 0 skips step 5),
#              FERROLM_TEST_AARCH64=0 skips step 6.
set -euo pipefail
cd "$(dirname "$0")/.."

# rustup's cargo, also when the caller's PATH lacks it (cron, sudo, CI shells).
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

t0=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60)) "$*"; }
failed=()
skipped=()
# check NAME CMD...: run a check, remember its name if it fails (or was skipped: status 77), go on.
check() {
  local name="$1" st=0
  shift
  "$@" || st=$?
  if [ "$st" = 0 ]; then
    echo "==> $name: passed"
  elif [ "$st" = 77 ]; then
    echo "==> $name: SKIPPED"
    skipped+=("$name")
  else
    echo "==> $name: FAILED (status $st)"
    failed+=("$name")
  fi
}

step "models: scripts/fetch-models.sh all"
scripts/fetch-models.sh all
step "Hugging Face test checkpoints: scripts/make-hf-fixtures.sh"
bash scripts/make-hf-fixtures.sh

step "Python packages: gguf 0.19.0 (tests/gguf_py.rs), openai 3.63.0 (cli/tests/serve.rs), jsonschema 4.26.0 (tests/json_schema.rs)"
# py_has MODULE DIST VERSION: python3 imports MODULE and has DIST at VERSION.
py_has() {
  python3 -c "import $1, importlib.metadata as m, sys; sys.exit(m.version('$2') != '$3')" 2>/dev/null
}
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location "$@" \
    || python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --user --break-system-packages "$@"
  # (A Debian system Python refuses plain installs (PEP 668): then install for this user.)
}
for spec in gguf:gguf:0.19.0 openai:openai:3.63.0 jsonschema:jsonschema:4.26.0; do
  IFS=: read -r mod dist ver <<<"$spec"
  if py_has "$mod" "$dist" "$ver"; then
    echo "$dist $ver already installed"
  else
    pip_install "$dist==$ver"
    py_has "$mod" "$dist" "$ver" || { echo "error: $dist==$ver is still not importable by python3 after pip install" >&2; exit 1; }
  fi
done

# The chat page test drives headless Chromium: installed here when running as root (CI), else
# the test fails saying how to install it.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "chromium (the chat page test in cli/tests/serve.rs)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
      || echo "==> chromium install failed"
  else
    echo "==> the chat page test needs chromium: run 'sudo apt-get install chromium'"
  fi
fi

# The C ABI: scripts/check-header.sh regenerates capi/include/ferrolm.h and fails if the checked-in one
# differs.
step "C header is current: scripts/check-header.sh"
check "C header" bash scripts/check-header.sh

step "x86-64: cargo test --workspace"
check "x86-64 tests" cargo test --workspace --no-fail-fast

# The decoder with the scalar reference kernels forced: greedy generation equal to llama.cpp's on
# SmolLM2 (Q4_1) and Gemma 3 (Q4_K, Q5_0, Q6_K, Q8_0: Qwen's file has the same types, and its
# scalar run took two of this step's three minutes), identical logits for 1/2/3 threads, decode =
# prefill exactly, the qemu smoke tests. `--workspace` with `--test` filters, as step 4 resolves
# features: nothing is rebuilt.
step "x86-64, scalar kernels forced: FERROLM_KERNELS=scalar cargo test --test generate --test logits"
check "scalar-kernel decoder tests" env FERROLM_KERNELS=scalar cargo test --workspace --test generate --test logits -- \
  qemu_smoke smollm2_greedy gemma3_greedy thread smollm2_decode

# The AVX2 kernels alone (what a laptop without AVX-512 runs): the kernel properties against the
# scalar oracle, and on a CPU with the AVX-512 VNNI kernels the decoder against llama.cpp too
# (without them step 4 already ran the decoder on the AVX2 kernels).
step "x86-64, AVX2 kernels only: FERROLM_KERNELS=avx2 cargo test --test props, then --test generate --test logits --test batch"
check "AVX2-kernel property tests" env FERROLM_KERNELS=avx2 cargo test --workspace --test props
# (/proc/cpuinfo spells the flag avx512_vnni.)
if grep -qwE 'avx512_vnni|avx512vnni' /proc/cpuinfo 2>/dev/null; then
  check "AVX2-kernel decoder tests" env FERROLM_KERNELS=avx2 cargo test --workspace --test generate --test logits --test batch
else
  echo "==> no AVX-512 VNNI on this CPU: step 4 ran the decoder on the AVX2 kernels"
fi

# The AVX-VNNI kernels (Intel 12th generation and later, Zen 5: the prefill tiles' `vpdpbusd` without
# AVX-512), where the CPU has them: the kernel properties, and on a CPU with AVX-512 too (where step 4
# ran the AVX-512 kernels) the decoder's logits against llama.cpp's and its thread/batch identities.
if grep -qw avx_vnni /proc/cpuinfo 2>/dev/null; then
  step "x86-64, AVX-VNNI kernels: FERROLM_KERNELS=avxvnni cargo test --test props, then --test logits"
  check "AVX-VNNI-kernel property tests" env FERROLM_KERNELS=avxvnni cargo test --workspace --test props
  if grep -qwE 'avx512_vnni|avx512vnni' /proc/cpuinfo 2>/dev/null; then
    check "AVX-VNNI-kernel decoder tests" env FERROLM_KERNELS=avxvnni cargo test --workspace --test logits
  fi
else
  echo "==> no AVX-VNNI on this CPU: its kernels are not run here"
fi

# Where the CPU has AMX (Sapphire Rapids and later Xeons), step 4 ran the AMX prefill tiles of the
# 32-element formats; the decoder's logits again with FERROLM_KERNELS=avx512 run the AVX-512 VNNI
# tiles they replace (which the kernel unit tests also check against the AMX ones, bit for bit).
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
  step "x86-64, AVX-512 without AMX: FERROLM_KERNELS=avx512 cargo test --test logits"
  check "AVX-512-kernel decoder tests" env FERROLM_KERNELS=avx512 cargo test --workspace --test logits
fi

fuzz_secs="${FERROLM_TEST_FUZZ_SECONDS:-20}"
if [ "$fuzz_secs" != 0 ]; then
  step "fuzz smoke: gguf_reader as a standalone driver for ${fuzz_secs}s on fuzz/seeds"
  # Own workspace and target dir (fuzz/target); no libFuzzer, so the stable toolchain builds it.
  check "fuzz smoke" cargo run --quiet --release --manifest-path fuzz/Cargo.toml --no-default-features --bin gguf_reader -- \
    --seconds "$fuzz_secs" --artifacts fuzz/artifacts/gguf_reader_drive fuzz/seeds
fi

if [ "${FERROLM_TEST_AARCH64:-1}" != 0 ] && [ -f scripts/test-aarch64.sh ]; then
  # The cross toolchain and qemu: installed here when running as root, else the one command.
  if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      step "aarch64 toolchain: scripts/install-aarch64.sh"
      bash scripts/install-aarch64.sh || echo "==> aarch64 toolchain install failed"
    else
      echo "==> the aarch64 steps need the cross toolchain and qemu: run 'sudo bash scripts/install-aarch64.sh'"
    fi
  fi
  # The kernels' whole suite (golden bytes, NEON/sdot vs scalar properties), then the decoder on the
  # real SmolLM2 (short logits and greedy checks against llama.cpp): qemu runs ~50x slower than the
  # host, so the long real-model tests stay on x86-64.
  step "aarch64 under qemu: scripts/test-aarch64.sh ferrolm-kernels"
  check "aarch64 kernel tests" bash scripts/test-aarch64.sh ferrolm-kernels
  step "aarch64 under qemu: decoder smoke tests on SmolLM2 (tests named qemu_smoke)"
  # (max and cortex-a72 only: the smmla tiles of `max` equal cortex-a76's sdot tiles bit for bit,
  # which the kernels' own tests check.)
  check "aarch64 decoder tests" env FERROLM_QEMU_CPUS="max cortex-a72" \
    bash scripts/test-aarch64.sh ferrolm --test logits --test generate -- qemu_smoke
fi

if [ ${#skipped[@]} -gt 0 ]; then
  step "SKIPPED (not run, not passed): $(IFS=,; echo "${skipped[*]}" | sed 's/,/, /g')"
fi
if [ ${#failed[@]} -gt 0 ]; then
  step "FAILED: $(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')"
  exit 1
fi
if [ ${#skipped[@]} -gt 0 ]; then
  step "all tests that ran passed; ${#skipped[@]} step(s) skipped"
else
  step "all tests passed"
fi
