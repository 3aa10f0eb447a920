#!/usr/bin/env bash
# Write a pkg-config file for the C API from capi/ferrolm.pc.in:
#
#   scripts/gen-pc.sh [--prefix DIR] [--libdir DIR] [--includedir DIR] [-o FILE]
#
# Defaults: prefix /usr/local, libdir PREFIX/lib, includedir PREFIX/include, output to stdout.
# For the build tree: scripts/gen-pc.sh --prefix "$PWD" --libdir "$PWD/target/release" -o ferrolm.pc
# then PKG_CONFIG_PATH="$PWD" pkg-config --cflags --libs ferrolm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

prefix=/usr/local libdir="" includedir="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --libdir) libdir="$2"; shift 2 ;;
    --includedir) includedir="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--prefix DIR] [--libdir DIR] [--includedir DIR] [-o FILE]" >&2; exit 2 ;;
  esac
done
libdir="${libdir:-$prefix/lib}"
includedir="${includedir:-$prefix/include}"
# The workspace version: the first `version = "..."` of Cargo.toml ([workspace.package]).
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"
[ -n "$version" ] || { echo "gen-pc: no version in Cargo.toml" >&2; exit 1; }

esc() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }
text="$(sed -e "s|@PREFIX@|$(esc "$prefix")|" -e "s|@LIBDIR@|$(esc "$libdir")|" \
  -e "s|@INCLUDEDIR@|$(esc "$includedir")|" -e "s|@VERSION@|$(esc "$version")|" "$root/capi/ferrolm.pc.in")"
if [ -n "$out" ]; then
  printf '%s\n' "$text" > "$out"
else
  printf '%s\n' "$text"
fi
