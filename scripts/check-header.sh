#!/usr/bin/env bash
# Fail (exit 1, with the diff) when capi/include/ferrolm.h is not what cbindgen generates from
# capi/src/ now. Fix: scripts/gen-header.sh, then commit capi/include/ferrolm.h.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bash scripts/gen-header.sh "$tmp/ferrolm.h"
if ! diff -u capi/include/ferrolm.h "$tmp/ferrolm.h"; then
  echo "error: capi/include/ferrolm.h is stale: run scripts/gen-header.sh and commit the result" >&2
  exit 1
fi
echo "capi/include/ferrolm.h is current"
