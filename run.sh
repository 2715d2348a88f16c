#!/usr/bin/env bash
# Set-up, build, boot and test of the graft kernel. See README.md.
#
#   ./run.sh            build everything, boot the kernel in QEMU and run the demo
#   ./run.sh test       host tests (cargo test) and the in-kernel test suite in QEMU
#   ./run.sh shell      boot to the interactive console on this terminal (Ctrl-A X quits QEMU)
#   ./run.sh setup      only install what is missing (toolchain, QEMU)
#   ./run.sh build      only build the host tools and the disk images
#
# Environment: KVM=1 uses KVM instead of software emulation (TCG); TIMEOUT=SECS changes the
# QEMU time-out; CMDLINE="..." adds kernel command-line words (e.g. "log=debug test=memory").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

ROOT=$PWD
BUILD=$ROOT/build
KTARGET=x86_64-unknown-none
BOOT=$ROOT/target/release/boot

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $*"; fi
}

setup() {
  command -v rustup >/dev/null || die "rustup is required: install it from https://rustup.rs, then run ./run.sh again"
  local channel
  channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
  # `rustup toolchain install` with no argument installs exactly what rust-toolchain.toml names.
  if ! rustup run "$channel" rustc --version >/dev/null 2>&1 \
     || ! rustup component list --toolchain "$channel" --installed 2>/dev/null | grep -q '^rust-src' \
     || ! rustup component list --toolchain "$channel" --installed 2>/dev/null | grep -q '^llvm-tools' \
     || ! rustup target list --toolchain "$channel" --installed 2>/dev/null | grep -q "^$KTARGET"; then
    say "installing the Rust toolchain $channel with rust-src, llvm-tools and $KTARGET (first run only)"
    rustup toolchain install
  fi
  if ! command -v qemu-system-x86_64 >/dev/null; then
    say "installing QEMU (qemu-system-x86) with apt-get (first run only)"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-system-x86
  fi
}

# build_kernel NAME [cargo args...]: builds the kernel ELF and its disk image build/NAME.img.
build_kernel() {
  local name=$1; shift
  cargo build --release -p kern --target "$KTARGET" "$@"
  mkdir -p "$BUILD"
  cp "target/$KTARGET/release/kern" "$BUILD/$name.elf"
  "$BOOT" image "$BUILD/$name.elf" "$BUILD/$name.img"
}

build_tools() {
  if [ ! -x "$BOOT" ]; then
    say "building the host tools (the first build compiles the bootloader: a few minutes)"
  fi
  cargo build --release -p boot
}

qemu_args() {
  local args=(--timeout "${TIMEOUT:-$1}")
  [ "${KVM:-0}" = 1 ] && args+=(--kvm)
  printf '%s\n' "${args[@]}"
}

cmd_build() {
  setup
  build_tools
  say "building the kernel"
  build_kernel kern
}

cmd_demo() {
  cmd_build
  say "booting the kernel in QEMU"
  mapfile -t args < <(qemu_args 120)
  "$BOOT" run "$BUILD/kern.img" "${args[@]}" --cmdline "mode=demo ${CMDLINE:-}"
}

cmd_shell() {
  cmd_build
  say "booting to the console (Ctrl-A X quits QEMU)"
  "$BOOT" run "$BUILD/kern.img" --interactive --cmdline "mode=shell ${CMDLINE:-}"
}

cmd_test() {
  setup
  build_tools
  local host=0
  say "host tests: cargo test"
  # --release shares the build of the host tools (and their bootloader stages) made above.
  cargo test --workspace --release || host=1
  say "building the kernel's test build"
  build_kernel kern-test --features ktest
  say "in-kernel tests in QEMU"
  mapfile -t args < <(qemu_args 300)
  local kernel=0
  "$BOOT" run "$BUILD/kern-test.img" "${args[@]}" --tests --cmdline "${CMDLINE:-}" > "$BUILD/ktest.log" 2>&1 || kernel=1
  # Everything QEMU printed is in build/ktest.log; show it, then the summary as the last line.
  grep -v '^kernel: ' "$BUILD/ktest.log" || true
  if [ $host -eq 0 ]; then echo "host: cargo test passed"; else echo "host: cargo test FAILED (see above)"; fi
  grep '^kernel: ' "$BUILD/ktest.log" | tail -n 1
  [ $host -eq 0 ] && [ $kernel -eq 0 ]
}

case "${1:-demo}" in
  demo) cmd_demo ;;
  test) cmd_test ;;
  shell) cmd_shell ;;
  setup) setup ;;
  build) cmd_build ;;
  -h|--help|help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (try ./run.sh help)" ;;
esac
