#!/usr/bin/env bash
# Runs the workspace's tests for aarch64-unknown-linux-gnu under qemu-user, once per CPU: qemu's
# `max` (dotprod and i8mm: the sdot kernels with the smmla prefill tiles, as on Apple M2, Graviton 3,
# Cortex-A710 and later), `cortex-a76` (dotprod, no i8mm: the sdot kernels and tiles, as on a
# Raspberry Pi 5) and `cortex-a72` (neither: the plain NEON kernels, as on a Raspberry Pi 4).
# FERROLM_QEMU_CPUS="max cortex-a72" picks a subset.
#
# Usage: scripts/test-aarch64.sh [PACKAGE... | --lib | --tests | --test NAME ...]  (default: the whole workspace)
#   e.g. scripts/test-aarch64.sh ferrolm-kernels
# Extra arguments for the test binaries can follow `--`: scripts/test-aarch64.sh ferrolm-kernels -- aarch64
#
# Uses Debian's toolchain (rustc-web/cargo-web, installed by scripts/install-aarch64.sh) with its own
# target directory (target/aarch64), so it never fights the x86 build over artifacts. The linker and
# the qemu runner come from .cargo/config.toml. Exits non-zero if a run fails, naming the CPU.
# If the toolchain is not installed, says so and exits 77 ("skipped", as automake's test drivers).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
RUSTC_BIN=/usr/bin/rustc
RUSTDOC_BIN=/usr/bin/rustdoc
CARGO_BIN=/usr/bin/cargo
SYSROOT_LIBC=/usr/aarch64-linux-gnu

missing=()
[ -x "$RUSTC_BIN" ] || missing+=("$RUSTC_BIN (rustc-web)")
[ -x "$CARGO_BIN" ] || missing+=("$CARGO_BIN (cargo-web)")
[ -d /usr/lib/rustlib/$TARGET ] || missing+=("/usr/lib/rustlib/$TARGET (libstd-rust-web-dev:arm64)")
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu)")
command -v qemu-aarch64 >/dev/null || missing+=("qemu-aarch64 (qemu-user)")
[ -d "$SYSROOT_LIBC/lib" ] || missing+=("$SYSROOT_LIBC/lib (libc6-dev-arm64-cross)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-aarch64: skipped, the aarch64 toolchain is not installed (run scripts/install-aarch64.sh):"
  printf '  missing %s\n' "${missing[@]}"
  exit 77
fi

pkgs=()
sel=()   # target selection passed to cargo: --lib, --tests, --test NAME
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    --lib | --tests) sel+=("$1") ;;
    --test) sel+=("$1" "$2"); shift ;;
    *) pkgs+=("-p" "$1") ;;
  esac
  shift
done
[ "${1:-}" = "--" ] && shift
test_args=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then pkgs=(--workspace); fi

export RUSTC="$RUSTC_BIN"
# Doc-tests too need Debian's rustdoc (rustup's has no aarch64 std); without it, skip them.
doc_args=()
if [ -x "$RUSTDOC_BIN" ]; then
  export RUSTDOC="$RUSTDOC_BIN"
else
  echo "test-aarch64: $RUSTDOC_BIN not found, doc-tests skipped"
  doc_args=(--lib --bins --tests)
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_AARCH64:-target/aarch64}"
# The runs must exercise the NEON kernels, never the forced scalar path.
unset FERROLM_KERNELS
unset QEMU_CPU

echo "test-aarch64: $("$RUSTC_BIN" --version), packages: ${pkgs[*]}"
"$CARGO_BIN" test --target "$TARGET" "${pkgs[@]}" ${sel[@]+"${sel[@]}"} ${doc_args[@]+"${doc_args[@]}"} --no-run

failed=()
start=$SECONDS
cpus="${FERROLM_QEMU_CPUS:-max cortex-a76 cortex-a72}"
for cpu in $cpus; do
  case $cpu in
    max) what='dotprod + i8mm: sdot kernels, smmla tiles' ;;
    cortex-a76 | neoverse-n1) what='dotprod, no i8mm: sdot kernels and tiles' ;;
    *) what='no dotprod: plain NEON kernels' ;;
  esac
  echo "test-aarch64: ==== QEMU_CPU=$cpu ($what)"
  # Show once which kernels this CPU selects (kernels().backend), from the kernels' unit tests.
  if ! QEMU_CPU=$cpu "$CARGO_BIN" test -q --target "$TARGET" -p ferrolm-kernels --lib \
    -- --exact aarch64::tests::report_backend --nocapture 2>&1 | grep -E "aarch64 kernels:|panicked"; then
    echo "test-aarch64: QEMU_CPU=$cpu could not report the selected backend"
  fi
  # --no-fail-fast: every test binary runs, so one failure does not hide the others.
  if QEMU_CPU=$cpu "$CARGO_BIN" test --no-fail-fast --target "$TARGET" "${pkgs[@]}" ${sel[@]+"${sel[@]}"} ${doc_args[@]+"${doc_args[@]}"} \
    -- ${test_args[@]+"${test_args[@]}"}; then
    echo "test-aarch64: QEMU_CPU=$cpu passed ($((SECONDS - start)) s so far)"
  else
    echo "test-aarch64: QEMU_CPU=$cpu FAILED"
    failed+=("$cpu")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "test-aarch64: FAILED on QEMU_CPU=${failed[*]}"
  exit 1
fi
echo "test-aarch64: all passed on QEMU_CPU=${cpus// / and }"
