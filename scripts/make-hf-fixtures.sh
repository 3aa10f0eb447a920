#!/usr/bin/env bash
# Builds the two Hugging Face checkpoints the converter tests use (models/hf/smollm2-135m and
# models/hf/synth-llama-256) with scripts/make_hf_checkpoint.py, from
# models/SmolLM2-135M-Instruct.Q4_1.gguf.
#
# Python dependencies (numpy, safetensors, gguf==0.19.0) come from PyPI with pip into a private
# directory, models/.pydeps (pip --target), so the system Python is left alone.
# Every produced file is checked against the sha256 list in
# tools/tests/data/convert/hf-checkpoints.json (llama.cpp reference data, copied into the repo);
# a checkpoint that already matches is not rebuilt.
#
# Then, unless --no-requant is given, makes the requantized SmolLM2 variants the decoder's tests
# use, models/SmolLM2-135M-Instruct.{F16,Q8_0,Q4_0,Q4_K_M}.gguf, with this repository's `quantize`
# (Q4_1 -> F16 -> each type, as llama-quantize made them) and checks their size and sha256 against
# the whole-file digests of llama-quantize's output in
# tools/tests/data/convert/smollm2-135m-requant/requant-F16{,-Q8_0,-Q4_0,-Q4_K_M}.json.
#
# Usage: scripts/make-hf-fixtures.sh [--no-requant]   (needs scripts/fetch-models.sh smollm2 first)
# Exit status: 0 when everything matches, non-zero with one line on stderr otherwise.
set -euo pipefail
root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))"
cd "$root"
script=scripts/make_hf_checkpoint.py
list=tools/tests/data/convert/hf-checkpoints.json
requant_dir=tools/tests/data/convert/smollm2-135m-requant
src=models/SmolLM2-135M-Instruct.Q4_1.gguf
out=models/hf
deps=models/.pydeps

[ -f "$script" ] || { echo "error: $script not found" >&2; exit 1; }
[ -f "$list" ] || { echo "error: $list not found" >&2; exit 1; }
[ -f "$src" ] || { echo "error: $src missing: run scripts/fetch-models.sh smollm2 first" >&2; exit 1; }

# Prints the checkpoints (smollm2-135m, synth-llama-256) whose files do not all match the list.
stale() {
  python3 - "$list" "$out" <<'PY'
import hashlib, json, os, sys
files = json.load(open(sys.argv[1]))["files"]
bad = set()
for rel, want in files.items():
    path = os.path.join(sys.argv[2], rel)
    ok = os.path.isfile(path) and os.path.getsize(path) == want["bytes"]
    if ok:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        ok = h.hexdigest() == want["sha256"]
    if not ok:
        bad.add(rel.split("/")[0])
print(" ".join(sorted(bad)))
PY
}

todo="$(stale)"
requant() {
  [ "${1:-}" = "--no-requant" ] && return 0
  # The golden JSON for variant T: requant-F16.json for F16, requant-F16-T.json for the others.
  golden() { if [ "$1" = F16 ]; then echo "$requant_dir/requant-F16.json"; else echo "$requant_dir/requant-F16-$1.json"; fi; }
  local t
  for t in F16 Q8_0 Q4_0 Q4_K_M; do
    [ -f "$(golden "$t")" ] || { echo "error: $(golden "$t") not found" >&2; exit 1; }
  done
  # "size sha256" of llama-quantize's output for variant T.
  want() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["file_bytes"], d["file_sha256"])' "$(golden "$1")"; }
  ok() {
    local f="models/SmolLM2-135M-Instruct.$1.gguf"
    [ -f "$f" ] && [ "$(stat -c %s "$f") $(sha256sum "$f" | cut -d' ' -f1)" = "$(want "$1")" ]
  }
  local f16=models/SmolLM2-135M-Instruct.F16.gguf all=1
  for t in F16 Q8_0 Q4_0 Q4_K_M; do ok "$t" || all=0; done
  [ "$all" = 1 ] && { echo "models: requantized SmolLM2 variants up to date" >&2; return 0; }
  echo "building quantize (cargo build --release -p ferrolm-quantize)" >&2
  cargo build --quiet --release -p ferrolm-quantize >&2
  local q=target/release/quantize
  ok F16 || "$q" "$src" "$f16" F16 --force --allow-requantize
  for t in Q8_0 Q4_0 Q4_K_M; do
    ok "$t" || "$q" "$f16" "models/SmolLM2-135M-Instruct.$t.gguf" "$t" --force
  done
  for t in F16 Q8_0 Q4_0 Q4_K_M; do
    ok "$t" || { echo "error: models/SmolLM2-135M-Instruct.$t.gguf does not match $(golden "$t")" >&2; exit 1; }
  done
  echo "models: requantized SmolLM2 variants built and verified" >&2
}

[ -z "$todo" ] && { echo "models/hf: both checkpoints up to date" >&2; requant "${1:-}"; exit 0; }

if ! PYTHONPATH="$deps" python3 -c "import numpy, safetensors, gguf" 2>/dev/null; then
  echo "installing numpy, safetensors, gguf==0.19.0 into $deps (PyPI)" >&2
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$deps" "numpy" "safetensors" "gguf==0.19.0" >&2
fi

mkdir -p "$out"
for ck in $todo; do
  case "$ck" in
    smollm2-135m) only=smollm2 ;;
    synth-llama-256) only=synth ;;
    *) continue ;;
  esac
  echo "building $out/$ck" >&2
  PYTHONPATH="$deps" python3 "$script" "$src" "$out" --only "$only" >&2
done

todo="$(stale)"
[ -z "$todo" ] || { echo "error: $out/{$todo} does not match $list" >&2; exit 1; }
echo "models/hf: both checkpoints built and verified" >&2
requant "${1:-}"
