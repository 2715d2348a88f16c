//! The overhead table, measured in the guest (`./run.sh bench`).
//!
//! QEMU runs with `-icount shift=0`, so the time-stamp counter counts guest instructions: the
//! figures are instruction counts, the same on every run of the same build. Each row is the
//! mean over many repetitions minus the cost of the empty measuring loop. Next to them, the
//! per-call costs VINO reported in 1996 (microseconds on a 120 MHz Pentium) for its four
//! grafts: read-ahead (RA), page eviction (VM), scheduling (Sched) and encryption (Encrypt).
use alloc::string::String;
use alloc::vec::Vec;
use core::hint::black_box;

use graft_ir::abi;
use graft_ir::interp::DataValue;

use crate::arch::{self, QemuExit};
use crate::fs::ramdisk;
use crate::graft::callables::LOCKS;
use crate::graft::locks::{LockId, Owner};
use crate::graft::points::{Record, ThreadCandidate};
use crate::graft::runtime::{self, GraftId};
use crate::graft::state::ProcessId;
use crate::graft::txn::{Action, TxnLog};
use crate::graft::jit::JitCode;
use crate::kprintln;
use crate::time::rdtsc;

const N: u64 = 2000;

/// Mean instructions of `f` over `n` runs, less the empty loop's.
fn measure(n: u64, mut f: impl FnMut()) -> u64 {
    let empty = {
        let t = rdtsc();
        for _ in 0..n {
            black_box(());
        }
        rdtsc() - t
    };
    let t = rdtsc();
    for _ in 0..n {
        f();
    }
    (rdtsc() - t).saturating_sub(empty) / n
}

fn noop(_: u64, _: u64) {}

/// The single-step tracer: with the trap flag set, every instruction raises a debug exception
/// whose handler records where it stopped. Gives the exact instruction path of one call.
const TRACE_MAX: usize = 4096;
struct Trace(core::cell::UnsafeCell<[u64; TRACE_MAX]>);
// SAFETY: written only by the debug-exception handler on the one CPU, read after tracing stops.
unsafe impl Sync for Trace {}
static TRACE: Trace = Trace(core::cell::UnsafeCell::new([0; TRACE_MAX]));
static TRACE_LEN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Debug exception (trap flag): record the address of the next instruction.
pub fn on_step(frame: &mut crate::arch::trap::TrapFrame) {
    let n = TRACE_LEN.load(core::sync::atomic::Ordering::Relaxed);
    if n < TRACE_MAX {
        // SAFETY: see `Trace`; interrupts are off in the handler.
        unsafe { (*TRACE.0.get())[n] = frame.rip };
        TRACE_LEN.store(n + 1, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `f` single-stepped and prints the addresses it executed (`scripts/trace-symbols`
/// turns them into a per-function count).
fn trace(what: &str, f: impl FnOnce()) {
    TRACE_LEN.store(0, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: sets RFLAGS.TF; the debug exceptions it raises are handled by `on_step`.
    unsafe { core::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq") };
    f();
    // SAFETY: clears RFLAGS.TF again.
    unsafe { core::arch::asm!("pushfq", "and qword ptr [rsp], ~0x100", "popfq") };
    let n = TRACE_LEN.load(core::sync::atomic::Ordering::Relaxed);
    kprintln!("trace {what}: {n} steps; bench::run at {:x}", run as *const () as usize);
    // SAFETY: tracing has stopped; nothing writes the buffer now.
    let t = unsafe { &(&*TRACE.0.get())[..n] };
    for chunk in t.chunks(8) {
        let mut line = String::from("trace:");
        for rip in chunk {
            line.push_str(&alloc::format!(" {rip:x}"));
        }
        kprintln!("{line}");
    }
}

fn load(pid: ProcessId, blob: &[u8]) -> Option<GraftId> {
    match runtime::load(pid, blob) {
        Ok(id) => Some(id),
        Err(e) => {
            kprintln!("bench: cannot load: {e}");
            None
        }
    }
}

fn load_text(pid: ProcessId, text: &str) -> Option<GraftId> {
    let module = graft_ir::parse(text).ok()?;
    let blob = graft_ir::encode(&module).ok()?;
    load(pid, &blob)
}

#[inline(never)]
fn default_pick(_: &mut [&mut [u8]]) -> i32 {
    black_box(0)
}

/// Cost of one dispatch of `point` for `pid` with `args` and `buffers`.
fn dispatch_cost(point: &'static abi::GraftPoint, pid: ProcessId, args: &[DataValue], buffers: &mut [&mut [u8]]) -> u64 {
    let mut txn = TxnLog::new(Owner(200), 256, 16);
    measure(N / 4, || {
        black_box(runtime::dispatch(point, pid, &mut txn, args, buffers, |_, _| true, default_pick));
    })
}

/// Records per buffer of records, and bytes per byte buffer, in a fixture.
const FIXTURE_RECORDS: usize = 8;
const FIXTURE_BYTES: usize = 512;

/// Arguments and buffers for one call of `point`, derived from its row: `FIXTURE_RECORDS`
/// records in each buffer of records (field `j` of record `i` holds a small value that varies
/// with both, laid out per the row), `FIXTURE_BYTES` bytes in a byte buffer; a count parameter
/// equals its buffer's count (as the kernel passes it), handles name object 1, other values 0.
/// An open file of `pid` (descriptor, graft handle) for the file points' fixtures.
fn bench_file(pid: ProcessId) -> Option<(u64, u64)> {
    let ino = crate::fs::disk::with_fs(|fs| fs.lookup("/data/ra1.bin").map_err(crate::fs::disk::error)).ok()?;
    let file = crate::fs::files::OpenFile { ino, offset: 0, read: true, write: false, append: false, readahead: Default::default() };
    let fd = crate::fs::files::install(pid, file).ok()?;
    Some((fd, crate::fs::files::graft_handle(pid, fd)))
}

fn fixture(point: &abi::GraftPoint) -> (Vec<DataValue>, Vec<Vec<u8>>) {
    let mut args: Vec<DataValue> = point
        .params
        .iter()
        .map(|p| match p.ty {
            graft_ir::Type::Handle(k) => DataValue::Handle(k, 1),
            t => DataValue::from_bits(t, 0),
        })
        .collect();
    let mut bufs = Vec::new();
    for spec in point.regions {
        let (count, buf) = if spec.has_records() {
            let size = spec.record_size as usize;
            let mut buf = alloc::vec![0u8; FIXTURE_RECORDS * size];
            for (i, rec) in buf.chunks_exact_mut(size).enumerate() {
                for (j, f) in spec.fields.iter().enumerate() {
                    let v = ((i * 7 + j * 5) % 13) as u64 * 1000 + i as u64;
                    let (o, w) = (f.offset as usize, f.ty.size() as usize);
                    if let Some(dst) = rec.get_mut(o..o + w) {
                        dst.copy_from_slice(&v.to_le_bytes()[..w]);
                    }
                }
            }
            (FIXTURE_RECORDS, buf)
        } else {
            (FIXTURE_BYTES, alloc::vec![0x5au8; FIXTURE_BYTES])
        };
        if let abi::Extent::Param(k) = spec.extent {
            if let Some(a) = args.get_mut(k) {
                *a = DataValue::from_bits(a.ty(), count as u64);
            }
        }
        bufs.push(buf);
    }
    (args, bufs)
}

struct Row {
    what: &'static str,
    ours: String,
    vino: &'static str,
}

pub fn run() -> ! {
    #[cfg(feature = "bench-paths")]
    {
        real_paths();
        arch::exit_qemu(QemuExit::Success)
    }
    #[allow(unreachable_code)]
    micro()
}

/// The micro-benchmarks and the overhead table on fixtures (the `bench` build).
fn micro() -> ! {
    kprintln!("bench: measuring (guest instructions; QEMU -icount shift=0)");
    let sched = &abi::GRAFT_POINTS[abi::point::SCHED_PICK_NEXT];
    let pid = ProcessId(900);
    let plain = ProcessId(901);
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |what, ours: String, vino| rows.push(Row { what, ours, vino });

    // The kernel's default, called directly.
    let mut threads = [0u8; ThreadCandidate::SIZE * 4];
    let direct = measure(N, || {
        black_box(default_pick(black_box(&mut [&mut threads[..]])));
    });
    row("direct call of the default", alloc::format!("{direct}"), "");

    // Indirection: the slot lookup that finds no graft.
    let indir = measure(N, || {
        black_box(runtime::attached(black_box(sched), black_box(plain)));
    });
    row("indirection (slot lookup)", alloc::format!("{indir}"), "Indir 1 / 1 / 1 / 0");

    // Begin + commit with no records.
    let mut txn = TxnLog::new(Owner(201), 64, 8);
    let bc = measure(N, || {
        let _ = txn.begin();
        let _ = txn.commit(&LOCKS);
    });
    row("begin + commit, no records", alloc::format!("{bc}"), "Begin 36/52/38/32 + Commit 28/34/30/32");
    let ab0 = measure(N, || {
        let _ = txn.begin();
        let _ = txn.abort(&LOCKS);
    });
    row("begin + abort, 0 undo records", alloc::format!("{ab0}"), "Abort 29 / 27 / 33 / 36");
    let ab16 = measure(N, || {
        let _ = txn.begin();
        for i in 0..16 {
            let _ = txn.log_undo(Action { run: noop, a: i, b: 0 });
        }
        let _ = txn.abort(&LOCKS);
    });
    row("begin + abort, 16 undo records", alloc::format!("{ab16}"), "");
    let lock = measure(N, || {
        let _ = txn.begin();
        let _ = txn.lock(&LOCKS, LockId(15));
        let _ = txn.commit(&LOCKS);
    });
    if option_env!("GRAFT_BENCH_TRACE").is_some() {
        trace("lock in a transaction", || {
            let _ = txn.begin();
            let _ = txn.lock(&LOCKS, LockId(15));
            let _ = txn.commit(&LOCKS);
        });
    }
    row("lock acquire + release in a txn", alloc::format!("{}", lock.saturating_sub(bc)), "Lock 33 / 34 / 33 / 0");

    // Dispatch with no graft attached, and of an empty graft.
    let args = [DataValue::I32(4)];
    let none = dispatch_cost(sched, plain, &args, &mut [&mut threads[..]]);
    row("dispatch, no graft attached", alloc::format!("{none} (+{} over direct)", none.saturating_sub(direct)), "");
    let empty = "graft sched.pick_next\nresources data_size=8 fuel=1000\n\nfunction fn0(i32) -> i32 {\nb0(v0: i32):\n    v1 = iconst.i32 0\n    return v1\n}\n";
    let empty_cost = match load_text(pid, empty) {
        Some(id) => {
            let _ = runtime::attach(pid, id);
            let lookup = measure(N, || {
                black_box(runtime::attached(black_box(sched), black_box(pid)));
            });
            row("  of which slot lookup, graft found", alloc::format!("{lookup}"), "");
            let c = dispatch_cost(sched, pid, &args, &mut [&mut threads[..]]);
            if option_env!("GRAFT_BENCH_TRACE").is_some() {
                let mut txn = TxnLog::new(Owner(200), 256, 16);
                trace("empty-graft dispatch", || {
                    black_box(runtime::dispatch(sched, pid, &mut txn, &args, &mut [&mut threads[..]], |_, _| true, default_pick));
                });
            }
            let _ = runtime::unload(pid, id);
            row("dispatch of an empty graft", alloc::format!("{c} (+{} over direct)", c.saturating_sub(direct)), "");
            c
        }
        None => 0,
    };

    // The sample grafts: cost of the graft's own work (dispatch minus the empty graft).
    let samples: [(&str, &str, &'static str); 4] = [
        ("grafts/keep_buffer_cache.gb", "graft work: VM page eviction", "Graft 160 (VM)"),
        ("grafts/group_schedule.gb", "graft work: Sched group scheduling", "Graft 35 (Sched)"),
        ("grafts/xtea_read_filter.gb", "graft work: Encrypt XTEA, 512 bytes", "Graft 166 (Encrypt)"),
        ("grafts/readahead_pattern.gb", "graft work: RA read-ahead", "Graft 2 (RA)"),
    ];
    for (path, what, vino) in samples {
        let Some(blob) = ramdisk::file(path) else {
            row(what, String::from("(blob not in the ramdisk)"), vino);
            continue;
        };
        let p = ProcessId(902);
        let Some(id) = load(p, blob) else {
            row(what, String::from("(not loadable yet: needs the file system's callables)"), vino);
            continue;
        };
        let Some(g) = runtime::graft(id) else {
            row(what, String::from("(unloaded under us)"), vino);
            continue;
        };
        let point = g.point;
        let _ = runtime::attach(p, id);
        let (mut args, mut bufs) = fixture(point);
        // File points get a real open file of the process (the file callables refuse anything
        // else): /data/ra1.bin of the attached file system.
        let file = bench_file(p);
        for a in args.iter_mut() {
            if let (DataValue::Handle(graft_ir::HandleKind::File, _), Some((_, h))) = (*a, file) {
                *a = DataValue::Handle(graft_ir::HandleKind::File, h);
            }
        }
        let mut slices: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        let cost = dispatch_cost(point, p, &args, &mut slices);
        let s = g.stats();
        let note = if s.total_aborts() > 0 { " (aborted!)" } else { "" };
        row(what, alloc::format!("{}{note}, {} B code", cost.saturating_sub(empty_cost), g.code_size()), vino);
        let _ = runtime::unload(p, id);
        if let Some((fd, _)) = file {
            let _ = crate::fs::files::close(p, fd);
        }
    }

    // SFI: the same memory-heavy graft with and without the sandbox checks.
    let mut sfi_row = None;
    if let Some(blob) = ramdisk::file("grafts/xtea_read_filter.gb") {
        if let Some(v) = graft_ir::decode(blob).ok().and_then(|m| graft_ir::verify(m).ok()) {
            let checked = JitCode::compile_unchecked(&v, graft_jit::Unchecked::default());
            let unchecked = JitCode::compile_unchecked(&v, graft_jit::Unchecked { memory: true, fuel: false });
            if let (Ok(c), Ok(u)) = (checked, unchecked) {
                let run = |code: JitCode| {
                    let Some(mut inst) = code.instance(graft_ir::interp::initial_data(v.module()), pid, 0, runtime::registry()) else { return 1 };
                    inst.set_limits(0, 10_000_000_000);
                    let mut buf = [0x5au8; 512];
                    let mut txn = TxnLog::new(Owner(202), 64, 8);
                    measure(N / 4, || {
                        let mut fuel = 1_000_000;
                        txn.begin().ok();
                        let args = [1, 0, 512];
                        let _ = black_box(crate::graft::jit::call(&mut inst, &mut txn, &args, &mut [&mut buf[..]], &mut fuel));
                        txn.commit(&LOCKS).ok();
                    })
                };
                let (tc, tu) = (run(c), run(u));
                sfi_row = Some((tc, tu));
                row(
                    "SFI: region checks, XTEA 512 B",
                    alloc::format!("{} ({tc} checked vs {tu} unchecked, x{}.{:02})", tc.saturating_sub(tu), tc / tu.max(1), (tc % tu.max(1)) * 100 / tu.max(1)),
                    "SFI 187 (Encrypt)",
                );
            }
        }
    }

    // Compile time in the kernel (Cranelift, with sandbox and fuel checks) by function size.
    let mut compile_rows = Vec::new();
    for insts in [50usize, 500] {
        let mut text = String::from("graft vm.pick_victim\nresources data_size=64 fuel=100000\n\nfunction fn0(i32) -> i32 {\nb0(v0: i32):\n");
        // A chain of arithmetic and data-region traffic, `insts` instructions with the return.
        let mut v = 0;
        let mut n = 0;
        while n + 1 < insts {
            let op = ["iadd", "imul", "bxor", "isub"][n % 4];
            text.push_str(&alloc::format!("    v{} = {op} v{v}, v0\n", v + 1));
            v += 1;
            n += 1;
            if n % 8 == 0 && n + 2 < insts {
                text.push_str(&alloc::format!("    store r0[v0], v{v}\n    v{} = load.i32 r0[v0 + 4]\n", v + 1));
                v += 1;
                n += 2;
            }
        }
        text.push_str(&alloc::format!("    return v{v}\n}}\n"));
        let verified = graft_ir::parse(&text).ok().and_then(|m| graft_ir::verify(m).ok());
        let Some(verified) = verified else {
            compile_rows.push(alloc::format!("{insts}-instruction function: did not verify"));
            continue;
        };
        let count = verified.module().functions.iter().map(|f| f.blocks.iter().map(|b| b.insts.len()).sum::<usize>()).sum::<usize>();
        let t = rdtsc();
        let code = JitCode::compile(&verified);
        let took = rdtsc() - t;
        match code {
            Ok(c) => compile_rows.push(alloc::format!("{count}-instruction function: compiled in {took} instructions, {} bytes of code", c.code_size())),
            Err(e) => compile_rows.push(alloc::format!("{count}-instruction function: {e}")),
        }
    }

    // The worst load the limits allow: decoding, verification, compilation and publication of
    // the largest module of each expensive shape, in guest time (1 instruction = 1 ns here).
    let mut load_rows = Vec::new();
    let mut worst = (0u64, "");
    for (shape, make) in runtime::worst_case::SHAPES {
        let Some((module, blob)) = runtime::worst_case::largest(make) else {
            load_rows.push(alloc::format!("{shape}: no module fits the blob limit"));
            continue;
        };
        let blocks: usize = module.functions.iter().map(|f| f.blocks.len()).sum();
        let insts = module.inst_count();
        let pid = ProcessId(900_000);
        crate::memory::reset_heap_peak();
        let before = crate::memory::heap_stats().requested;
        let t = rdtsc();
        let r = runtime::load(pid, &blob);
        let took = rdtsc() - t;
        let peak = crate::memory::heap_stats().peak.saturating_sub(before);
        match r {
            Ok(id) => {
                let _ = runtime::unload(pid, id);
                if took > worst.0 {
                    worst = (took, shape);
                }
                load_rows.push(alloc::format!(
                    "{shape}: {insts} instructions in {blocks} blocks, blob {} bytes: {took} instructions ({}.{:03} ms), heap peak {} KiB, charged {} KiB",
                    blob.len(),
                    took / 1_000_000,
                    took / 1000 % 1000,
                    peak / 1024,
                    runtime::compile_charge(insts, blocks) / 1024
                ));
            }
            Err(e) => load_rows.push(alloc::format!("{shape}: {insts} instructions in {blocks} blocks, blob {} bytes: refused: {e}", blob.len())),
        }
    }

    kprintln!();
    for r in &compile_rows {
        kprintln!("compile: {r}");
    }
    for r in &load_rows {
        kprintln!("load: {r}");
    }
    kprintln!(
        "load: worst accepted load {} instructions = {}.{:03} ms of guest time ({}; target: at most 50 ms)",
        worst.0,
        worst.0 / 1_000_000,
        worst.0 / 1000 % 1000,
        worst.1
    );
    kprintln!();
    kprintln!("{:<38} {:>34}   {}", "per call", "ours (guest instructions)", "VINO 1996 (us: RA / VM / Sched / Encrypt)");
    kprintln!("{}", "-".repeat(120));
    for r in &rows {
        kprintln!("{:<38} {:>34}   {}", r.what, r.ours, r.vino);
    }
    kprintln!("{}", "-".repeat(120));
    kprintln!("VINO totals: 103 / 307 / 142 / 417 us per call. Ours at 1 instruction/ns would be the figures above in ns.");
    let empty_over = empty_cost.saturating_sub(direct);
    kprintln!("bench: empty-graft dispatch costs {empty_over} instructions more than a direct call of the default (target: at most 150)");
    for line in fault_costs() {
        kprintln!("vm: {line}");
    }
    for line in crate::fs::bench::lines() {
        kprintln!("storage: {line}");
    }
    let _ = sfi_row;
    arch::exit_qemu(QemuExit::Success)
}

/// The cost of a user page fault on the real path, in guest instructions from the fault
/// handler's entry to its return: `dbsim faultbench` reads never-written pages under a limit of
/// 32, so every fault zero-fills a page after evicting a clean one (no disk I/O), chosen by the
/// clock, then by keep_buffer_cache.gb through `vm.pick_victim`.
fn fault_costs() -> Vec<String> {
    let mut out = Vec::new();
    let runs: [(&str, &[&str]); 2] = [
        ("clock", &["bin/dbsim", "faultbench"]),
        ("keep_buffer_cache.gb", &["bin/dbsim", "faultbench", "graft"]),
    ];
    let mut costs = [0u64; 2];
    for (i, (who, args)) in runs.iter().enumerate() {
        let _ = crate::vm::cost::take();
        let code = crate::task::spawn("bin/dbsim", args, None).ok().and_then(crate::task::run_to_exit);
        let (faults, total) = crate::vm::cost::take();
        costs[i] = total / faults.max(1);
        let failed = if code == Some(0) { "" } else { " (dbsim faultbench failed)" };
        out.push(alloc::format!("page fault, victim chosen by {who}: {} instructions per fault ({faults} faults){failed}", costs[i]));
    }
    out.push(alloc::format!("page fault: the graft adds {} instructions per fault", costs[1].saturating_sub(costs[0])));
    out
}

/// VINO's table measured on the kernel's real paths: the demo programs run (read-ahead and
/// encryption on file reads and writes, page eviction under a resident limit, group scheduling,
/// and the hostile grafts for the aborts), and the dispatch path's phase stamps
/// (`runtime::phases`) say where each point's calls spent their guest instructions.
#[cfg(feature = "bench-paths")]
fn real_paths() {
    use runtime::phases;
    // Lock and SFI are not on a point's path: the micro-benchmarks' figures (the other image,
    // printed above this table by ./run.sh bench).
    let lock = 0u64;
    let sfi: Option<(u64, u64)> = None;
    kprintln!();
    kprintln!("bench: the demo programs on the real paths (fsgrafts, dbsim, schedtest, hostile), phases stamped in dispatch:");
    for args in [&["fsgrafts"][..], &["dbsim"], &["schedtest", "10", "2"], &["hostile"]] {
        let prog = args[0];
        match crate::task::spawn(prog, args, None) {
            Ok(pid) => {
                let code = crate::task::run_to_exit(pid);
                kprintln!("bench: {prog} exited with {code:?}");
            }
            Err(e) => kprintln!("bench: cannot run {prog}: {e}"),
        }
    }
    let cols = [
        ("RA", abi::point::FS_COMPUTE_RA),
        ("VM", abi::point::VM_PICK_VICTIM),
        ("Sched", abi::point::SCHED_PICK_NEXT),
        ("Encrypt", abi::point::FS_WRITE_FILTER),
    ];
    let sums: Vec<[u64; 8]> = cols.iter().map(|&(_, p)| phases::take(p)).collect();
    let per = |s: &[u64; 8], what: usize, n: usize| s[what].checked_div(s[n]).map_or(String::from("-"), |v| alloc::format!("{v}"));
    let vino: [(&str, [&str; 4]); 8] = [
        ("Indir", ["1", "1", "1", "0"]),
        ("Begin", ["36", "52", "38", "32"]),
        ("Graft", ["2", "160", "35", "166"]),
        ("Check", ["-", "-", "-", "-"]),
        ("Commit", ["28", "34", "30", "32"]),
        ("Abort", ["29", "27", "33", "36"]),
        ("Lock", ["33", "34", "33", "0"]),
        ("SFI", ["-", "-", "-", "187"]),
    ];
    kprintln!("{:<8} {:>30} {:>30} {:>30} {:>30}", "", "RA", "VM", "Sched", "Encrypt");
    kprintln!("{:<8} {:>30} {:>30} {:>30} {:>30}", "", "ours instr. (VINO us)", "ours instr. (VINO us)", "ours instr. (VINO us)", "ours instr. (VINO us)");
    for (row, (name, v)) in vino.iter().enumerate() {
        let cell = |c: usize| -> String {
            let s = &sums[c];
            let ours = match row {
                0 => per(s, phases::INDIR, phases::CALLS),
                1 => per(s, phases::BEGIN, phases::CALLS),
                2 => per(s, phases::GRAFT, phases::CALLS),
                3 => per(s, phases::CHECK, phases::CALLS),
                4 => per(s, phases::COMMIT, phases::CALLS),
                5 => per(s, phases::ABORT, phases::ABORTS),
                6 => if lock > 0 { alloc::format!("{lock}*") } else { String::from("(above)*") },
                _ => match (c, sfi) {
                    (3, Some((checked, unchecked))) => alloc::format!("{}*", checked.saturating_sub(unchecked)),
                    (3, None) => String::from("(above)*"),
                    _ => String::from("-"),
                },
            };
            alloc::format!("{ours} ({})", v[c])
        };
        kprintln!("{:<8} {:>30} {:>30} {:>30} {:>30}", name, cell(0), cell(1), cell(2), cell(3));
    }
    let total = |s: &[u64; 8]| {
        [phases::INDIR, phases::BEGIN, phases::GRAFT, phases::CHECK, phases::COMMIT]
            .iter()
            .map(|&w| s[w].checked_div(s[phases::CALLS]).unwrap_or(0))
            .sum::<u64>()
    };
    kprintln!(
        "{:<8} {:>30} {:>30} {:>30} {:>30}",
        "Total",
        alloc::format!("{} (103)", total(&sums[0])),
        alloc::format!("{} (307)", total(&sums[1])),
        alloc::format!("{} (142)", total(&sums[2])),
        alloc::format!("{} (417)", total(&sums[3]))
    );
    kprintln!(
        "calls: {} committed, aborts {} | {} / {} | {} / {} | {} / {}   (* the micro-benchmarks above: not on a point's path)",
        sums[0][phases::CALLS],
        sums[0][phases::ABORTS],
        sums[1][phases::CALLS],
        sums[1][phases::ABORTS],
        sums[2][phases::CALLS],
        sums[2][phases::ABORTS],
        sums[3][phases::CALLS],
        sums[3][phases::ABORTS]
    );
}
