#!/usr/bin/env bash
# Generate the C header from the C ABI crate (capi/src/) with cbindgen:
#
#   scripts/gen-header.sh            writes capi/include/ferrolm.h
#   scripts/gen-header.sh OUT.h      writes OUT.h (scripts/check-header.sh uses this)
#
# cbindgen is a build tool only (normal cargo builds do not run it). When it is missing, the
# pinned version is installed with `cargo install --locked` (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

CBINDGEN_VERSION=0.29.2
out="${1:-capi/include/ferrolm.h}"

if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
cbindgen_bin="$(command -v cbindgen || true)"
if [ -z "$cbindgen_bin" ] && [ -x "$HOME/.cargo/bin/cbindgen" ]; then
  cbindgen_bin="$HOME/.cargo/bin/cbindgen"
fi
have=""
if [ -n "$cbindgen_bin" ]; then
  have="$("$cbindgen_bin" --version | awk '{print $2}')"
fi
if [ "$have" != "$CBINDGEN_VERSION" ]; then
  echo "gen-header: installing cbindgen $CBINDGEN_VERSION (found: ${have:-none})" >&2
  cargo install --quiet --locked cbindgen --version "$CBINDGEN_VERSION" >&2
  cbindgen_bin="$HOME/.cargo/bin/cbindgen"
  [ -x "$cbindgen_bin" ] || cbindgen_bin="$(command -v cbindgen)"
fi

# The crate's own files (cbindgen follows its `mod` declarations), no `cargo metadata`: fast.
"$cbindgen_bin" --quiet --config capi/cbindgen.toml --lang c --output "$out" capi/src/lib.rs
