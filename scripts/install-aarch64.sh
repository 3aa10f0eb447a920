#!/usr/bin/env bash
# Installs Debian's aarch64 cross toolchain and qemu so `cargo test --target aarch64-unknown-linux-gnu`
# runs here under qemu-user: rustc-web/cargo-web (1.96) with libstd-rust-web-dev:arm64,
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user. Idempotent; needs root.
set -euo pipefail
if [ -x /usr/bin/qemu-aarch64 ] && [ -x /usr/bin/aarch64-linux-gnu-gcc ] && [ -d /usr/lib/rustlib/aarch64-unknown-linux-gnu ] ; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
dpkg --add-architecture arm64
apt-get update -qq
apt-get install -y -qq --no-install-recommends rustc-web cargo-web libstd-rust-web-dev:arm64 \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
