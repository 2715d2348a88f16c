#!/usr/bin/env bash
# Set-up, build, boot and test of the graft kernel. See README.md.
#
#   ./run.sh            build everything, boot the kernel in QEMU and run the demo
#   ./run.sh test       host tests (cargo test), the in-kernel test suite and the end-to-end
#                       tests of user space, all in QEMU
#   ./run.sh shell      boot to the interactive shell on this terminal (Ctrl-A X quits QEMU)
#   ./run.sh bench      the overhead table, measured in the guest under -icount (instructions)
#   ./run.sh gdb        boot the shell with QEMU's gdb stub waiting; prints the gdb command
#   ./run.sh fuzz       a million random system calls (FUZZ_CALLS=N for another count), then
#                       every kernel counter must be back at its baseline
#   ./run.sh setup      only install what is missing (toolchain, QEMU)
#   ./run.sh build      only build the host tools, user programs, grafts and disk images
#
# Options (after the command): --add FILE puts FILE into the ramdisk (as user/NAME), e.g.
# a graft you compiled with `target/release/graftc build my.graft -o my.gb`; repeatable.
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
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  # e2fsprogs: mke2fs builds the file-system image, e2fsck and debugfs check what the guest left.
  PATH=$PATH:/sbin:/usr/sbin command -v mke2fs >/dev/null || missing+=(e2fsprogs)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} with apt-get (first run only)"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}

# The scratch disk of the in-kernel tests (vda of the test build): 4 MiB of zeros, fresh per run.
SCRATCH_SEED=24301   # 0x5EED, the seed of the kernel's disk test (dev::virtio_blk::ktests)
SCRATCH_FIRST=64
SCRATCH_COUNT=64
make_scratch_disk() {
  mkdir -p "$BUILD"
  rm -f "$BUILD/scratch.img"
  truncate -s 4M "$BUILD/scratch.img"
}

# build_kernel NAME [cargo args...]: builds the kernel ELF and its disk image build/NAME.img.
build_kernel() {
  local name=$1; shift
  cargo build --release -p kern --target "$KTARGET" "$@"
  mkdir -p "$BUILD"
  # The bootloader reads the whole ELF from disk under emulation: drop the debug info (tens of
  # MiB) from the copy that goes into the image; target/ keeps the full one for debugging.
  local strip
  strip="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-strip"
  if [ -x "$strip" ]; then
    "$strip" --strip-debug -o "$BUILD/$name.elf" "target/$KTARGET/release/kern"
  else
    cp "target/$KTARGET/release/kern" "$BUILD/$name.elf"
  fi
  "$BOOT" image "$BUILD/$name.elf" "$BUILD/$name.img" --ramdisk "$BUILD/ramdisk.tar"
}

build_tools() {
  if [ ! -x "$BOOT" ]; then
    say "building the host tools (the first build compiles the bootloader and Cranelift: a few minutes)"
  fi
  cargo build --release -p boot -p graftc -p benches
}

ADD_FILES=()

# The ramdisk: user programs in bin/, every sample graft compiled by graftc in grafts/, and the
# user's own files (--add) in user/.
build_ramdisk() {
  say "building user programs"
  (cd user && cargo build --release)
  local root=$BUILD/ramdisk
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/grafts/hostile" "$root/user"
  local f
  for f in user/target/$KTARGET/release/*; do
    if [ -f "$f" ] && [ -x "$f" ] && [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      cp "$f" "$root/bin/"
    fi
  done
  # A truncated program (its ELF header names program headers past the end of the file), for
  # the system-call tests: spawning it must fail cleanly.
  head -c 64 "$root/bin/exitcode" > "$root/bin/broken-elf"
  say "compiling sample grafts with graftc"
  for f in sample-grafts/*.graft sample-grafts/hostile/*.graft; do
    local rel=${f#sample-grafts/}
    local out=$root/grafts/${rel%.graft}.gb
    if ! target/release/graftc build "$f" -o "$out" >/dev/null 2>"$BUILD/graftc.err"; then
      # A hostile graft the compiler refuses (a forbidden import) is still shipped, built with
      # the import rules left to the kernel's verifier, so the demo shows the kernel reject it.
      if [[ $f == */hostile/* ]] && target/release/graftc build --defer-import-rules "$f" -o "$out" >/dev/null 2>&1; then
        :
      else
        echo "run.sh: $f did not compile:" >&2; cat "$BUILD/graftc.err" >&2; exit 1
      fi
    fi
  done
  for f in "${ADD_FILES[@]}"; do
    [ -f "$f" ] || die "--add: no file $f"
    cp "$f" "$root/user/"
  done
  (cd "$root" && find . -type f | sed 's|^\./||' | sort > "$BUILD/ramdisk.list" && tar --format=ustar -cf "$BUILD/ramdisk.tar" -T "$BUILD/ramdisk.list")
}

# The disk file system (vda): ext2 made by mke2fs from a directory holding the same programs
# and grafts as the ramdisk, plus data files. Programs are still loaded from the ramdisk (the
# kernel boots and tests without a disk); the disk is where processes read and write files.
FS_SIZE=64M
RA_SEED=5390660   # 0x524144, fsgrafts's RA_SEED
# The file system disk's rate, for demos that measure what a slow disk costs (read-ahead).
DISK_IOPS=1000
build_fs_image() {
  local root=$BUILD/fsroot
  rm -rf "$root"
  mkdir -p "$root/data"
  cp -r "$BUILD/ramdisk/bin" "$BUILD/ramdisk/grafts" "$root/"
  printf 'This file system was made on the host by mke2fs -d from build/fsroot.\n' > "$root/data/README"
  # The read-ahead demo's files (fsgrafts): 1 MiB each, a test pattern the guest checks.
  "$BOOT" fill-pattern "$root/data/ra1.bin" --seed "$RA_SEED" --bytes 1048576
  "$BOOT" fill-pattern "$root/data/ra2.bin" --seed "$RA_SEED" --bytes 1048576
  "$BOOT" fill-pattern "$root/data/ra3.bin" --seed "$RA_SEED" --bytes 65536
  # The storage benchmark's file (./run.sh bench): 16 MiB.
  "$BOOT" fill-pattern "$root/data/big.bin" --seed 1 --bytes 16777216
  rm -f "$BUILD/fs.img"
  truncate -s "$FS_SIZE" "$BUILD/fs.img"
  PATH=$PATH:/sbin:/usr/sbin mke2fs -q -t ext2 -b 1024 -d "$root" -F "$BUILD/fs.img"
}

# A damaged copy of the file system for the in-kernel tests (vda of the test build): /bad's
# directory block overwritten (a bad rec_len) and an indirect pointer of /data/ra3.bin past
# the disk. The kernel must answer named errors and keep running.
make_corrupt_image() {
  local img=$BUILD/corrupt.img dbg="env PATH=$PATH:/sbin:/usr/sbin debugfs -w"
  cp "$BUILD/fs.img" "$img"
  $dbg -R "mkdir /bad" "$img" >/dev/null 2>&1
  $dbg -R "write $BUILD/fsroot/data/README /bad/readme" "$img" >/dev/null 2>&1
  $dbg -R "zap_block -f /bad -o 4 -l 2 -p 255 0" "$img" >/dev/null 2>&1
  $dbg -R "sif /data/ra3.bin block[IND] 99999999" "$img" >/dev/null 2>&1
}

# The swap disk (vdb): raw, zeroed, fresh per boot.
SWAP_SIZE=64M
build_swap_image() {
  rm -f "$BUILD/swap.img"
  truncate -s "$SWAP_SIZE" "$BUILD/swap.img"
}

# Host-side checks of the file system the guest used: e2fsck finds nothing to fix, and the files
# fstest wrote read back (debugfs) exactly as the guest was told to write them.
check_fs_image() {
  local img=$BUILD/fs.img ok=0
  if PATH=$PATH:/sbin:/usr/sbin e2fsck -fn "$img" > "$BUILD/e2fsck.log" 2>&1; then
    echo "host: e2fsck -fn $img: clean"
  else
    echo "host: e2fsck -fn $img found problems:"; cat "$BUILD/e2fsck.log"; ok=1
  fi
  if grep -q '^fstest: no file system' "$BUILD/e2e.log"; then
    echo "host: fstest found no file system"; return 1
  fi
  local got
  got=$(PATH=$PATH:/sbin:/usr/sbin debugfs -R 'cat /fstest/hello.txt' "$img" 2>/dev/null)
  if [ "$got" = "hello from the guest" ]; then
    echo "host: debugfs cat /fstest/hello.txt: as the guest wrote it"
  else
    echo "host: /fstest/hello.txt on the image is '$got', not what the guest wrote"; ok=1
  fi
  PATH=$PATH:/sbin:/usr/sbin debugfs -R 'cat /fstest/pattern.bin' "$img" 2>/dev/null > "$BUILD/pattern.got"
  if "$BOOT" check-file-pattern "$BUILD/pattern.got" --len 200000; then :; else ok=1; fi
  # fsgrafts wrote /crypt/secret.txt through the XTEA write filter.
  PATH=$PATH:/sbin:/usr/sbin debugfs -R 'cat /crypt/secret.txt' "$img" 2>/dev/null > "$BUILD/secret.got"
  if "$BOOT" check-xtea "$BUILD/secret.got"; then :; else ok=1; fi
  return $ok
}

# Crash safety: boot with init in crash mode (crashtest writes and fsyncs 8 files and the
# directories on their paths, then churns other files without syncing, beyond what the cache
# holds), kill QEMU in the middle of the churn, then check on the host:
# - every file announced durable reads back intact;
# - e2fsck -fn finds only what ext2 without a journal loses when the writes of unsynced
#   changes are cut off in an arbitrary order: every problem it reports is about an inode
#   changed after the last sync (stale block maps, sizes, link counts, entries naming inodes
#   not yet or no longer written, blocks freed and reused before the old owner's inode was
#   written), or is a free count or bitmap difference. A problem naming a durable file, its
#   directory or the root, or any other kind of damage (superblock, group descriptors,
#   e2fsck giving up) fails the test.
CRASH_AFTER=${CRASH_AFTER:-20}
crash_test() {
  build_fs_image
  build_swap_image
  "$BOOT" run "$BUILD/kern.img" --timeout "$CRASH_AFTER" --disk "$BUILD/fs.img" --disk "$BUILD/swap.img" \
    --cmdline "mode=crash log=warn" > "$BUILD/crash.log" 2>&1 || true
  if ! grep -q '^crashtest: churning' "$BUILD/crash.log"; then
    echo "crash: the workload never reached its unsynced phase:"; tail -n 20 "$BUILD/crash.log"; return 1
  fi
  local ok=0 dbg="env PATH=$PATH:/sbin:/usr/sbin debugfs"
  PATH=$PATH:/sbin:/usr/sbin e2fsck -fn "$BUILD/fs.img" > "$BUILD/crash-fsck.log" 2>&1 || true
  # The inodes that were synced and must be untouched: /, /crash, the durable files.
  local protected
  protected=$( { echo 2; $dbg -R "ls -l /crash" "$BUILD/fs.img" 2>/dev/null | awk '$NF == "." || $NF ~ /^durable-/ {print $1}'; } | sort -u | tr '\n' ' ')
  local problems inodes bad_kind bad_inode
  problems=$(grep -vE '^(Pass [1-5]|e2fsck [0-9]|$)' "$BUILD/crash-fsck.log" | grep -vE '^[^ ]+: [0-9]+/[0-9]+ files' || true)
  inodes=$(echo "$problems" | grep -oiE 'inode #?[0-9]+|\(([0-9]+)\) has' | grep -oE '[0-9]+' | sort -un | tr '\n' ' ')
  bad_kind=$(echo "$problems" | grep -viE 'inode|Fix\? no|Clear\? no|Salvage\? no|Suppress messages\? no|Connect to /lost\+found\? no|Clone multiply-claimed blocks\? no|Delete file\? no|Free (blocks|inodes) count wrong|Directories count wrong|(Block|Inode) bitmap differences|Padding at end of|^[[:space:]]*[-+(0-9]|Running additional passes|Pass 1[BCD]|WARNING: Filesystem still has errors|shared with [0-9]+ file|Illegal block number passed to ext2fs_test_block_bitmap|^\*\*\*|^ *$' || true)
  bad_inode=""
  for i in $inodes; do case " $protected " in *" $i "*) bad_inode="$bad_inode $i" ;; esac; done
  if grep -q 'e2fsck: aborted' "$BUILD/crash-fsck.log"; then bad_kind="e2fsck gave up; $bad_kind"; fi
  if [ -n "$bad_kind" ] || [ -n "$bad_inode" ]; then
    echo "crash: e2fsck found damage ext2 without a journal should not have:"
    [ -n "$bad_inode" ] && echo "  problems naming synced inodes:$bad_inode"
    [ -n "$bad_kind" ] && echo "$bad_kind" | sed 's/^/  /'
    ok=1
  else
    echo "crash: e2fsck -fn after the kill: $(echo "$problems" | grep -c .) report lines, all about inodes changed after the last sync (${inodes:-none}) or free counts and bitmaps; synced inodes ($protected) untouched"
  fi
  local path n=0
  for path in $(sed -n 's/^crashtest: durable //p' "$BUILD/crash.log"); do
    local seed=${path##*durable-}; seed=${seed%.bin}
    $dbg -R "cat $path" "$BUILD/fs.img" 2>/dev/null > "$BUILD/durable.got"
    "$BOOT" check-seeded "$BUILD/durable.got" --seed "$seed" --bytes 20000 > /dev/null || { echo "crash: $path was fsynced but did not survive"; ok=1; }
    n=$((n + 1))
  done
  [ $n -eq 8 ] || { echo "crash: only $n of 8 durable files were announced"; ok=1; }
  [ $ok -eq 0 ] && echo "crash: all $n fsynced files read back intact after the kill"
  return $ok
}

qemu_args() {
  local args=(--timeout "${TIMEOUT:-$1}")
  [ "${KVM:-0}" = 1 ] && args+=(--kvm)
  printf '%s\n' "${args[@]}"
}

cmd_build() {
  setup
  build_tools
  build_ramdisk
  build_fs_image
  build_swap_image
  say "building the kernel"
  build_kernel kern
}

cmd_demo() {
  cmd_build
  say "booting the kernel in QEMU"
  mapfile -t args < <(qemu_args 120)
  "$BOOT" run "$BUILD/kern.img" "${args[@]}" --disk "$BUILD/fs.img" --disk "$BUILD/swap.img" --disk-iops "$DISK_IOPS" --cmdline "mode=demo ${CMDLINE:-}"
}

cmd_shell() {
  cmd_build
  say "booting to the console (Ctrl-A X quits QEMU)"
  "$BOOT" run "$BUILD/kern.img" --interactive --disk "$BUILD/fs.img" --disk "$BUILD/swap.img" --cmdline "mode=shell ${CMDLINE:-}"
}

cmd_test() {
  setup
  build_tools
  local host=0
  say "host tests: cargo test"
  # --release shares the build of the host tools (and their bootloader stages) made above.
  cargo test --workspace --release || host=1
  build_ramdisk
  say "building the kernel's test build"
  build_kernel kern-test --features ktest
  say "in-kernel tests in QEMU"
  mapfile -t args < <(qemu_args 300)
  local kernel=0 e2e=0
  make_scratch_disk
  build_fs_image
  make_corrupt_image
  "$BOOT" run "$BUILD/kern-test.img" "${args[@]}" --tests --disk "$BUILD/corrupt.img" --disk "$BUILD/scratch.img" --cmdline "${CMDLINE:-}" > "$BUILD/ktest.log" 2>&1 || kernel=1
  grep -v '^kernel: ' "$BUILD/ktest.log" || true
  say "host-side checks of what the guest left on its disks"
  local disks=0
  "$BOOT" check-pattern "$BUILD/scratch.img" --seed "$SCRATCH_SEED" --first "$SCRATCH_FIRST" --count "$SCRATCH_COUNT" || disks=1
  say "end-to-end tests of user space in QEMU"
  build_kernel kern
  build_fs_image
  build_swap_image
  "$BOOT" run "$BUILD/kern.img" "${args[@]}" --e2e --disk "$BUILD/fs.img" --disk "$BUILD/swap.img" --disk-iops "$DISK_IOPS" --cmdline "mode=test ${CMDLINE:-}" > "$BUILD/e2e.log" 2>&1 || e2e=1
  grep -v '^kernel: ' "$BUILD/e2e.log" || true
  say "host-side checks of the file system the guest used"
  check_fs_image || disks=1
  say "crash safety: QEMU killed in the middle of a write workload"
  crash_test || disks=1
  if [ $host -eq 0 ]; then echo "host: cargo test passed"; else echo "host: cargo test FAILED (see above)"; fi
  if [ $disks -eq 0 ]; then echo "disks: host checks passed"; else echo "disks: host checks FAILED (see above)"; fi
  local kline eline
  kline=$(grep '^kernel: ' "$BUILD/ktest.log" | tail -n 1)
  eline=$(grep '^kernel: ' "$BUILD/e2e.log" | tail -n 1)
  echo "in-kernel ${kline#kernel: }"
  echo "end-to-end ${eline#kernel: }"
  # One closing line for both QEMU suites.
  local kp kf ep ef
  read -r kp kf < <(echo "$kline" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/')
  read -r ep ef < <(echo "$eline" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/')
  echo "qemu: $((kp + ep)) passed, $((kf + ef)) failed"
  [ $host -eq 0 ] && [ $kernel -eq 0 ] && [ $e2e -eq 0 ] && [ $disks -eq 0 ]
}

COMMAND=${1:-demo}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --add) [ $# -ge 2 ] || die "--add needs a file"; ADD_FILES+=("$(realpath "$2")"); shift 2 ;;
    *) die "unknown option '$1' (try ./run.sh help)" ;;
  esac
done

cmd_bench() {
  cmd_build
  say "building the kernel's benchmark builds"
  build_kernel kern-bench --features bench
  build_kernel kern-paths --features bench-paths
  say "running the benchmarks in QEMU under -icount shift=0 (rdtsc counts guest instructions)"
  # The file system (for the storage benchmark) with a cache larger than its 16 MiB file.
  "$BOOT" run "$BUILD/kern-bench.img" --timeout "${TIMEOUT:-600}" --icount --disk "$BUILD/fs.img" \
    --disk "$BUILD/swap.img" --cmdline "log=warn cache=20480 ${CMDLINE:-}"
  say "VINO's table on the real paths: the demo programs run in the guest, every graft call's phases stamped"
  build_fs_image
  build_swap_image
  "$BOOT" run "$BUILD/kern-paths.img" --timeout "${TIMEOUT:-900}" --icount --disk "$BUILD/fs.img" \
    --disk "$BUILD/swap.img" --cmdline "log=error ${CMDLINE:-}" > "$BUILD/paths.log" 2>&1 || true
  sed -n '/^bench: the demo programs/,$p' "$BUILD/paths.log" \
    | grep -E '^(bench: |  +(RA|ours)|(Indir|Begin|Graft|Check|Commit|Abort|Lock|SFI|Total) |calls: )' \
    | grep -v 'exited with Some(0)'
  echo "(the demo programs' own output: $BUILD/paths.log)"
  target/release/overhead-chart "$BUILD/paths.log" "$BUILD/bench/overhead.svg"
}

cmd_gdb() {
  cmd_build
  say "QEMU waits for gdb on localhost:1234; in another terminal run:"
  echo "  gdb -ex 'file $ROOT/target/$KTARGET/release/kern' -ex 'target remote localhost:1234'" >&2
  "$BOOT" run "$BUILD/kern.img" --gdb --disk "$BUILD/fs.img" --disk "$BUILD/swap.img" --cmdline "mode=shell ${CMDLINE:-}"
}

cmd_fuzz() {
  cmd_build
  local calls=${FUZZ_CALLS:-1000000} line verdict=""
  say "fuzzing the system calls: $calls random calls from 4 threads (robust fuzz in the shell)"
  # The shell runs `robust fuzz N` (sysfuzz, then every kernel counter must be back at its
  # baseline), then exits, which powers the machine off. Input is typed once the shell is up.
  : > "$BUILD/fuzz.log"
  coproc QEMU { timeout "${TIMEOUT:-1800}" "$BOOT" run "$BUILD/kern.img" --interactive --disk "$BUILD/fs.img" \
    --disk "$BUILD/swap.img" --cmdline "mode=shell log=warn ${CMDLINE:-}" 2>&1; }
  local out=${QEMU[0]} qin=${QEMU[1]} pid=$QEMU_PID
  while IFS= read -r line <&"$out"; do
    printf '%s\n' "$line" | tee -a "$BUILD/fuzz.log"
    case $line in
      *"graft kernel shell, pid"*) printf 'robust fuzz %s\n' "$calls" >&"$qin" ;;
      *"random system calls; counters back at baseline"*) verdict=ok; printf 'exit\n' >&"$qin" ;;
      *FAILED*|*PANIC*) verdict=failed; printf 'exit 1\n' >&"$qin" ;;
    esac
  done
  wait "$pid" 2>/dev/null || true
  [ "$verdict" = ok ] || die "fuzz: FAILED (see $BUILD/fuzz.log)"
  echo "fuzz: $calls calls, no panic, every kernel counter back at its baseline"
}

case "$COMMAND" in
  fuzz) cmd_fuzz ;;
  gdb) cmd_gdb ;;
  demo) cmd_demo ;;
  bench) cmd_bench ;;
  test) cmd_test ;;
  shell) cmd_shell ;;
  setup) setup ;;
  build) cmd_build ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$COMMAND' (try ./run.sh help)" ;;
esac
