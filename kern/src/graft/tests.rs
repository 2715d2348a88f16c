//! Tests of the graft runtime that run both on the host (`cargo test`) and in the kernel
//! (`ktest`): every abort cause leaves the state callables can reach exactly as it was, frees
//! every lock and every graft allocation, and lets the default answer; commits persist and their
//! deferred actions run exactly once.
use alloc::format;
use alloc::string::String;

use graft_ir::AbortReason;
use graft_ir::interp::DataValue;

use super::callables::LOCKS;
use super::locks::Owner;
use super::runtime::{self, GraftId, Outcome};
use super::state::{self, ProcessId};
use super::txn::TxnLog;
use crate::ktest::{TestFailure, TestResult};
use crate::{check, check_eq};

const POINT: &str = "vm.pick_victim";

fn fail(message: String) -> TestFailure {
    TestFailure { message, file: file!(), line: line!() }
}

/// A `vm.pick_victim` graft whose entry first changes kernel state (a counter, an allocation, a
/// lock) and then runs `tail`, which ends the block.
fn graft_text(extra_fns: &str, tail: &str) -> String {
    format!(
        "graft {POINT}
resources data_size=64 fuel=100000
import imp0 = kern.counter_add(i32, i64) -> i64
import imp1 = mem.alloc(i32) -> i32
import imp2 = lock.get(i32) -> handle<lock>
import imp3 = lock.acquire(handle<lock>) -> i32
import imp4 = mem.free(i32) -> i32
import imp5 = kern.counter_get(i32) -> i64

function fn0(i32) -> i32 {{
b0(v0: i32):
    v1 = iconst.i32 0
    v2 = iconst.i64 5
    v3 = call_import imp0(v1, v2)
    v4 = iconst.i32 100
    v5 = call_import imp1(v4)
    v6 = call_import imp2(v1)
    v7 = call_import imp3(v6)
{tail}
}}
{extra_fns}"
    )
}

fn load_text(pid: ProcessId, text: &str) -> Result<GraftId, TestFailure> {
    let module = graft_ir::parse(text).map_err(|e| fail(format!("parse: {e}")))?;
    let blob = graft_ir::encode(&module).map_err(|e| fail(format!("encode: {e}")))?;
    runtime::load(pid, &blob).map_err(|e| fail(format!("load: {e}")))
}

/// Dispatches the point once with 4 zeroed candidates; the default answers 3.
fn call(pid: ProcessId, txn: &mut TxnLog, n: i32) -> (i32, Outcome) {
    let mut cands = [0u8; 64];
    let point = graft_ir::abi::graft_point(POINT).expect("point");
    runtime::dispatch(point, pid, txn, &[DataValue::I32(n)], &mut [&mut cands[..]], |v, _| (0..4).contains(&v), |_| 3)
}

/// Locks of `pid` held by anyone (other tests run in parallel on the host: only this process's
/// locks are this test's business).
fn process_locks_held(pid: ProcessId) -> usize {
    (0..super::callables::LOCKS_PER_PROCESS)
        .filter_map(|n| super::callables::lock_id(pid, n))
        .filter(|&l| LOCKS.holder(l).is_some())
        .count()
}

fn new_txn(pid: ProcessId) -> TxnLog {
    TxnLog::new(Owner(pid.0 % 200 + 1), 64, 8)
}

/// Loads `text` for a fresh process, calls it once and checks the abort left nothing behind.
fn check_abort(pid: ProcessId, text: &str, arg: i32, expected: AbortReason) -> TestResult {
    let id = load_text(pid, text)?;
    runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
    let mut txn = new_txn(pid);
    let digest = state::digest(pid);
    let charged = state::charged(pid);
    let (answer, outcome) = call(pid, &mut txn, arg);
    check_eq!(outcome, Outcome::Aborted(expected));
    check_eq!(answer, 3); // the default's answer
    check_eq!(state::digest(pid), digest);
    check_eq!(state::charged(pid), charged);
    check_eq!(process_locks_held(pid), 0);
    check_eq!(txn.depth(), 0);
    let stats = runtime::graft(id).map(|g| g.stats()).unwrap_or_default();
    check_eq!(stats.calls, 1);
    check_eq!(stats.aborts_of(expected), 1);
    check_eq!(stats.commits, 0);
    runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

pub fn abort_out_of_bounds() -> TestResult {
    // Reads candidate record n * 16 of a 64-byte buffer: n = 4 is past the end.
    let tail = "    v8 = imul v0, v4\n    v9 = load.i32 r1[v8]\n    return v9";
    check_abort(ProcessId(301), &graft_text("", tail), 1, AbortReason::OutOfBounds)
}

pub fn abort_division_by_zero() -> TestResult {
    let tail = "    v8 = udiv v4, v0\n    return v8";
    check_abort(ProcessId(302), &graft_text("", tail), 0, AbortReason::DivisionByZero)
}

pub fn abort_out_of_fuel() -> TestResult {
    let tail = "    jump b1\nb1:\n    jump b1";
    check_abort(ProcessId(303), &graft_text("", tail), 0, AbortReason::OutOfFuel)
}

pub fn abort_explicit() -> TestResult {
    check_abort(ProcessId(304), &graft_text("", "    abort 42"), 0, AbortReason::Explicit(42))
}

pub fn abort_callable_failed() -> TestResult {
    let tail = "    v8 = iconst.i32 99\n    v9 = call_import imp5(v8)\n    return v1";
    let reason = AbortReason::CallableFailed(graft_ir::abi::errors::BAD_ARGUMENT);
    check_abort(ProcessId(305), &graft_text("", tail), 0, reason)
}

pub fn abort_invalid_result() -> TestResult {
    // Returns 7 for 4 candidates.
    let tail = "    v8 = iconst.i32 7\n    return v8";
    check_abort(ProcessId(306), &graft_text("", tail), 0, AbortReason::InvalidResult)
}

pub fn abort_resource_limit() -> TestResult {
    // Allocates 4 KiB at a time, forever: the process's memory limit stops it.
    let tail = "    v8 = iconst.i32 4096\n    jump b1\nb1:\n    v9 = call_import imp1(v8)\n    jump b1";
    check_abort(ProcessId(307), &graft_text("", tail), 0, AbortReason::ResourceLimit)
}

pub fn abort_call_depth() -> TestResult {
    let extra = "function fn1 deep(i32) -> i32 {\nb0(v0: i32):\n    v1 = call fn1(v0)\n    return v1\n}\n";
    let tail = "    v8 = call fn1(v0)\n    return v8";
    check_abort(ProcessId(308), &graft_text(extra, tail), 0, AbortReason::CallDepthExceeded)
}

pub fn abort_lock_timeout() -> TestResult {
    let pid = ProcessId(309);
    let id = load_text(pid, &graft_text("", "    return v1"))?;
    runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
    let mut txn = new_txn(pid);
    // The first call creates the process's lock 0, takes it and commits (releasing it).
    check_eq!(call(pid, &mut txn, 0), (0, Outcome::Committed));
    let lock = super::callables::lock_id(pid, 0).ok_or_else(|| fail("lock 0 was not created".into()))?;
    check_eq!(LOCKS.holder(lock), None);
    // Another thread holds it now: the graft's acquire cannot succeed and the call aborts.
    let other = Owner(250);
    check!(LOCKS.try_acquire(lock, other).is_ok());
    let digest = state::digest(pid);
    let (answer, outcome) = call(pid, &mut txn, 0);
    check_eq!(outcome, Outcome::Aborted(AbortReason::LockTimeout));
    check_eq!(answer, 3);
    check_eq!(state::digest(pid), digest);
    check_eq!(LOCKS.holder(lock), Some(other)); // the other holder keeps its lock
    LOCKS.release(lock, other);
    check_eq!(process_locks_held(pid), 0);
    runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

pub fn commit_persists_and_runs_deferred_actions_once() -> TestResult {
    let pid = ProcessId(310);
    // counter 0 += 5, allocate 100 bytes (kept), then allocate another 100 and free it
    // (the free is deferred to commit), then return 1.
    let tail = "    v8 = call_import imp1(v4)\n    v9 = call_import imp4(v8)\n    v10 = iconst.i32 1\n    return v10";
    let id = load_text(pid, &graft_text("", tail))?;
    runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
    let mut txn = new_txn(pid);
    for round in 1..=2u64 {
        check_eq!(call(pid, &mut txn, 0), (1, Outcome::Committed));
        check_eq!(state::counter(pid, 0), Some(5 * round as i64));
        // One 100-byte allocation kept per call; the freed one is gone exactly once.
        check_eq!(state::charged(pid), 100 * round);
        check_eq!(process_locks_held(pid), 0);
    }
    let stats = runtime::graft(id).map(|g| g.stats()).unwrap_or_default();
    check_eq!((stats.calls, stats.commits, stats.total_aborts()), (2, 2, 0));
    check!(stats.fuel_used > 0);
    runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

pub fn repeated_aborts_detach_the_graft() -> TestResult {
    let pid = ProcessId(311);
    let id = load_text(pid, &graft_text("", "    abort 1"))?;
    runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
    let mut txn = new_txn(pid);
    for _ in 0..runtime::DEFAULT_MAX_ABORTS {
        check_eq!(call(pid, &mut txn, 0).1, Outcome::Aborted(AbortReason::Explicit(1)));
    }
    check!(!runtime::graft(id).is_some_and(|g| g.is_attached()), "still attached");
    check_eq!(call(pid, &mut txn, 0), (3, Outcome::Default));
    runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

pub fn grafts_are_confined_to_their_installer() -> TestResult {
    let (a, b) = (ProcessId(312), ProcessId(313));
    let id = load_text(a, &graft_text("", "    return v1"))?;
    check_eq!(runtime::attach(b, id), Err(runtime::AttachError::NotOwner(id)));
    runtime::attach(a, id).map_err(|e| fail(format!("attach: {e}")))?;
    let mut txn = new_txn(b);
    // Process b has no graft: its calls get the default, and a's graft never runs for it.
    check_eq!(call(b, &mut txn, 0), (3, Outcome::Default));
    check_eq!(runtime::graft(id).map(|g| g.stats().calls), Some(0));
    // a attaches its graft for b (say, its child); when b exits, the slot empties.
    runtime::detach(a, id).map_err(|e| fail(format!("detach: {e}")))?;
    runtime::attach_for(a, id, b).map_err(|e| fail(format!("attach_for: {e}")))?;
    check!(runtime::attached(graft_ir::abi::graft_point(POINT).expect("point"), b).is_some());
    runtime::detach_all_for(b);
    check!(runtime::attached(graft_ir::abi::graft_point(POINT).expect("point"), b).is_none());
    check!(!runtime::graft(id).is_some_and(|g| g.is_attached()));
    check!(runtime::load(a, b"not a blob").is_err());
    let huge = alloc::vec![0u8; runtime::MAX_KERNEL_BLOB + 1];
    check!(matches!(runtime::load(a, &huge), Err(runtime::LoadError::TooLarge(_))));
    runtime::unload(a, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

pub fn abort_integer_overflow() -> TestResult {
    // i32::MIN / -1 does not fit: guarded, never a hardware divide error.
    let tail = "    v8 = iconst.i32 -2147483648\n    v9 = iconst.i32 -1\n    v10 = sdiv v8, v9\n    return v10";
    check_abort(ProcessId(314), &graft_text("", tail), 0, AbortReason::IntegerOverflow)
}

/// A pure computation (a loop over the candidates mixing arithmetic, shifts, compares and data
/// region traffic) gives the same answer through dispatch as through the reference interpreter.
pub fn result_equals_the_interpreter() -> TestResult {
    let pid = ProcessId(315);
    let text = "graft vm.pick_victim
resources data_size=64 fuel=100000

function fn0(i32) -> i32 {
b0(v0: i32):
    v1 = iconst.i32 0
    v2 = iconst.i64 0x1e3779b97f4a7c15
    jump b1(v1, v2)
b1(v3: i32, v4: i64):
    v5 = iconst.i32 200
    v6 = icmp slt v3, v5
    brif v6, b2, b3
b2:
    v7 = sextend.i64 v3
    v8 = imul v4, v2
    v9 = iconst.i64 29
    v10 = ushr v8, v9
    v11 = bxor v10, v7
    v12 = iconst.i32 3
    v13 = ishl v3, v12
    store r0[v13], v11
    v14 = load.i64 r0[v13 + 8]
    v15 = iadd v11, v14
    v16 = iconst.i32 1
    v17 = iadd v3, v16
    jump b1(v17, v15)
b3:
    v18 = iconst.i64 4
    v19 = urem v4, v18
    v20 = ireduce.i32 v19
    return v20
}
";
    let id = load_text(pid, text)?;
    runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
    let graft = runtime::graft(id).ok_or_else(|| fail("graft vanished".into()))?;
    let mut data = graft_ir::interp::initial_data(graft.verified().module());
    let mut cands = [0u8; 64];
    let mut fuel = 100_000;
    let expected = graft_ir::interp::run(
        graft.verified(),
        graft_ir::Module::ENTRY,
        &[DataValue::I32(4)],
        &mut [&mut data[..], &mut cands[..]],
        &mut fuel,
        &mut graft_ir::interp::NoHost,
    );
    let expected = match expected {
        Ok(Some(DataValue::I32(v))) => v,
        other => return Err(fail(format!("interpreter: {other:?}"))),
    };
    let mut txn = new_txn(pid);
    let (answer, outcome) = call(pid, &mut txn, 4);
    check_eq!(outcome, Outcome::Committed);
    check_eq!(answer, expected);
    check_eq!(graft.stats().fuel_used, 100_000 - fuel);
    runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

/// A filter graft that scrambles the buffer and then aborts: the file data comes out exactly
/// as it went in (the default filter leaves it alone).
pub fn filter_abort_restores_the_data() -> TestResult {
    let pid = ProcessId(318);
    let text = "graft fs.read_filter
resources data_size=8 fuel=100000

function fn0(handle<file>, i64, i32) -> i32 {
b0(v0: handle<file>, v1: i64, v2: i32):
    v3 = iconst.i32 0
    jump b1(v3)
b1(v4: i32):
    v5 = icmp slt v4, v2
    brif v5, b2, b3
b2:
    v6 = load.i8 r1[v4]
    v7 = iconst.i8 0x55
    v8 = bxor v6, v7
    store r1[v4], v8
    v9 = iconst.i32 1
    v10 = iadd v4, v9
    jump b1(v10)
b3:
    abort 5
}
";
    let id = load_text(pid, text)?;
    runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
    let mut txn = new_txn(pid);
    let mut buf: [u8; 64] = core::array::from_fn(|i| i as u8);
    let (r, outcome) = super::points::fs_filter(false, pid, &mut txn, 1, 0, &mut buf);
    check_eq!(outcome, Outcome::Aborted(AbortReason::Explicit(5)));
    check_eq!(r, 0);
    check!(buf.iter().enumerate().all(|(i, &b)| b == i as u8), "the buffer was left scrambled");
    runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

/// Read-ahead answers naming blocks outside the file are refused; the default reads on.
pub fn compute_ra_result_is_validated() -> TestResult {
    let pid = ProcessId(319);
    let text = "graft fs.compute_ra
resources data_size=8 fuel=1000

function fn0(handle<file>, i64, i64) -> i32 {
b0(v0: handle<file>, v1: i64, v2: i64):
    v3 = iconst.i64 1000
    v5 = iconst.i64 0
    store r1[v5], v3
    v4 = iconst.i32 1
    return v4
}
";
    let id = load_text(pid, text)?;
    runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
    let mut txn = new_txn(pid);
    let mut out = [0i64; 4];
    // A read of block 2 of a 10-block file: the graft names block 1000; the default's window
    // (blocks 3 and 4) answers instead.
    let (n, outcome) = super::points::fs_compute_ra(pid, &mut txn, 1, 8192, 4096, 10, &[3, 4], &mut out);
    check_eq!(outcome, Outcome::Aborted(AbortReason::InvalidResult));
    check_eq!(n, 2);
    check_eq!(&out[..2], &[3, 4]);
    runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
    Ok(())
}

/// A load charges its data region, module and overhead to the installer for as long as the
/// graft is loaded; past the process's budget the load is refused (and charges nothing), and
/// unloading gives everything back.
pub fn loads_are_charged_to_their_installer_within_a_budget() -> TestResult {
    let pid = ProcessId(318);
    let big = graft_text("", "    return v1").replace("data_size=64", "data_size=1048576");
    check_eq!(state::kernel_charged(pid), 0);
    let first = load_text(pid, &big)?;
    let one = state::kernel_charged(pid);
    check!(one >= 1 << 20, "a graft with a 1 MiB data region charged {one} bytes");
    let mut ids = alloc::vec![first];
    let refused = loop {
        let module = graft_ir::parse(&big).map_err(|e| fail(format!("parse: {e}")))?;
        let blob = graft_ir::encode(&module).map_err(|e| fail(format!("encode: {e}")))?;
        match runtime::load(pid, &blob) {
            Ok(id) => ids.push(id),
            Err(e) => break e,
        }
        check!(ids.len() <= runtime::MAX_GRAFTS_PER_PROCESS, "no refusal");
    };
    check!(
        matches!(refused, runtime::LoadError::Memory(state::ChargeError::OverBudget { .. })),
        "refused with {refused}"
    );
    check_eq!(state::kernel_charged(pid), one * ids.len() as u64);
    check!(state::kernel_charged(pid) <= state::KERNEL_MEMORY_PER_PROCESS);
    check_eq!(runtime::unload_all(pid), ids.len());
    check_eq!(runtime::grafts_of(pid).len(), 0);
    check_eq!(state::kernel_charged(pid), 0);
    super::forget_process(pid);
    Ok(())
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        #[cfg(test)]
        mod host {
            $(#[test] fn $name() { if let Err(e) = super::$name() { panic!("{e}") } })*
        }
        #[cfg(all(feature = "ktest", target_os = "none"))]
        mod kernel {
            $(crate::ktest! { fn $name() -> TestResult { super::$name() } })*
        }
    };
}

both!(
    abort_out_of_bounds,
    abort_division_by_zero,
    abort_out_of_fuel,
    abort_explicit,
    abort_callable_failed,
    abort_invalid_result,
    abort_resource_limit,
    abort_call_depth,
    abort_lock_timeout,
    commit_persists_and_runs_deferred_actions_once,
    repeated_aborts_detach_the_graft,
    grafts_are_confined_to_their_installer,
    abort_integer_overflow,
    result_equals_the_interpreter,
    filter_abort_restores_the_data,
    compute_ra_result_is_validated,
    loads_are_charged_to_their_installer_within_a_budget,
);

/// The watchdog stops a call that would run for a very long time on its fuel: the timer
/// interrupts the graft's code and the call aborts `Watchdog` (kernel only: the interpreter on
/// the host has no timer).
#[cfg(all(feature = "ktest", target_os = "none"))]
mod kernel_only {
    use super::*;

    crate::ktest! {
        fn abort_watchdog() -> TestResult {
            let pid = ProcessId(316);
            let id = load_text(pid, &graft_text("", "    jump b1\nb1:\n    jump b1"))?;
            runtime::attach(pid, id).map_err(|e| fail(format!("attach: {e}")))?;
            let graft = runtime::graft(id).ok_or_else(|| fail("graft vanished".into()))?;
            let mut limits = graft.limits();
            limits.fuel = 1 << 40;
            limits.wall_ns = 30_000_000;
            graft.set_limits(limits);
            let mut txn = new_txn(pid);
            let digest = state::digest(pid);
            let start = crate::time::uptime_ns();
            let (answer, outcome) = call(pid, &mut txn, 0);
            let took = crate::time::uptime_ns() - start;
            check_eq!(outcome, Outcome::Aborted(AbortReason::Watchdog));
            check_eq!(answer, 3);
            check!(took >= 30_000_000, "aborted after {took} ns, before the limit");
            check_eq!(state::digest(pid), digest);
            check_eq!(process_locks_held(pid), 0);
            runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
            Ok(())
        }

        // The heap a load uses at its peak (decoding, verification, compilation) stays within
        // what it charges, for the most expensive modules the limits allow.
        fn load_peak_memory_is_charged() -> TestResult {
            let pid = ProcessId(319);
            for (shape, make) in runtime::worst_case::SHAPES {
                let (module, blob) = runtime::worst_case::largest(make).ok_or_else(|| fail(format!("{shape}: no module fits")))?;
                let blocks: usize = module.functions.iter().map(|f| f.blocks.len()).sum();
                let charge = runtime::compile_charge(module.inst_count(), blocks) + runtime::decode_charge(blob.len());
                drop(module);
                crate::memory::reset_heap_peak();
                let before = crate::memory::heap_stats().requested;
                let r = runtime::load(pid, &blob);
                let peak = (crate::memory::heap_stats().peak - before) as u64;
                match r {
                    Ok(id) => runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?,
                    // Refused by the budget before compiling: nothing to measure.
                    Err(runtime::LoadError::Memory(_)) => continue,
                    Err(e) => return Err(fail(format!("{shape}: {e}"))),
                }
                check!(peak <= charge, "{shape}: peak {peak} bytes, charged {charge}");
            }
            check_eq!(state::kernel_charged(pid), 0);
            Ok(())
        }

        fn graft_code_is_published_read_only_and_executable() -> TestResult {
            let pid = ProcessId(317);
            let id = load_text(pid, &graft_text("", "    return v1"))?;
            let graft = runtime::graft(id).ok_or_else(|| fail("graft vanished".into()))?;
            check!(graft.code_size() > 0);
            runtime::unload(pid, id).map_err(|e| fail(format!("unload: {e}")))?;
            Ok(())
        }
    }
}
