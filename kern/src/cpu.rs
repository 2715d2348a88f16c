//! Per-CPU state, in one structure: what belongs to "the CPU" rather than to a thread or to a
//! subsystem. Its architecture part (TSS, interrupt stacks, the system-call entry's stack
//! slots) is `arch::CpuArch`, which `arch` owns and reaches on its own; the rest is here:
//! the transaction of the thread running on the CPU, the graft call in progress and the stacks
//! graft calls and the in-kernel compiler run on.
//!
//! One CPU today: `this()` is the first (and only) entry of `CPUS`. With SMP, `this()` reads
//! the CPU's index (GS base) and everything else stays as it is.
use core::sync::atomic::{AtomicPtr, Ordering};

use spin::Once;

use crate::graft::locks::OWNERS;
use crate::graft::txn::TxnLog;
use crate::memory::MapError;

/// Undo/commit records and locks of one thread's transaction log (all nesting levels).
pub const TXN_RECORDS: usize = 256;
pub const TXN_LOCKS: usize = 16;

pub struct Cpu {
    /// The log of the thread running on this CPU (the idle loop's own log when no thread is):
    /// set by the scheduler at every switch, taken by `with_txn` for the length of a graft
    /// point's call. Null while taken or before `init`.
    txn: AtomicPtr<TxnLog>,
    /// The idle loop's log: graft points reached while no thread runs (the scheduler choosing
    /// a thread from the idle loop) use it.
    idle_txn: Once<Option<&'static mut TxnLog>>,
    /// The graft call in progress on this CPU (a `graft::jit::Instance`), or null: the fault
    /// and timer hooks read it to abort the call.
    pub graft_call: AtomicPtr<crate::graft::jit::Instance>,
    /// The stack graft code runs on (lowest address, top), mapped on first use.
    pub graft_stack: Once<Result<(u64, u64), MapError>>,
    /// The stack the in-kernel compiler runs on (its top), mapped on first use.
    pub compile_stack: Once<Result<u64, MapError>>,
}

const MAX_CPUS: usize = 1;

static CPUS: [Cpu; MAX_CPUS] = [const {
    Cpu {
        txn: AtomicPtr::new(core::ptr::null_mut()),
        idle_txn: Once::new(),
        graft_call: AtomicPtr::new(core::ptr::null_mut()),
        graft_stack: Once::new(),
        compile_stack: Once::new(),
    }
}; MAX_CPUS];

/// This CPU's state.
#[inline(always)]
pub fn this() -> &'static Cpu {
    &CPUS[0]
}

/// Makes this CPU's idle log and makes it current (at boot, before the first thread runs).
pub fn init() {
    let cpu = this();
    let idle = cpu.idle_txn.call_once(|| {
        let owner = OWNERS.alloc()?;
        let log = TxnLog::try_new(owner, TXN_RECORDS, TXN_LOCKS).ok()?;
        crate::memory::try_box(log).ok().map(alloc::boxed::Box::leak)
    });
    match idle {
        Some(log) => cpu.txn.store(core::ptr::from_ref::<TxnLog>(log).cast_mut(), Ordering::Relaxed),
        None => log::warn!("no memory for the idle loop's transaction log: grafts reached from it run their defaults"),
    }
}

impl Cpu {
    /// Makes `log` the running thread's log (`None`: the idle loop's). Called by the scheduler
    /// with interrupts off, at a switch.
    ///
    /// # Safety
    /// `log` must stay valid, and be used by nothing else, until the next `set_txn`.
    pub unsafe fn set_txn(&self, log: Option<*mut TxnLog>) {
        let p = match log {
            Some(p) => p,
            None => match self.idle_txn.get() {
                Some(Some(idle)) => core::ptr::from_ref::<TxnLog>(idle).cast_mut(),
                _ => core::ptr::null_mut(),
            },
        };
        self.txn.store(p, Ordering::Relaxed);
    }
}

/// Runs `f` with the transaction log of the thread running on this CPU: every graft point
/// takes its transaction from here. `None` if the log is already in use further up this CPU's
/// stack (a point reached from inside another point's call) or not made yet; the caller then
/// uses its default policy.
#[inline]
pub fn with_txn<R>(f: impl FnOnce(Option<&mut TxnLog>) -> R) -> R {
    let cpu = this();
    let p = cpu.txn.load(Ordering::Relaxed);
    if p.is_null() {
        return f(None);
    }
    cpu.txn.store(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: `set_txn`'s contract: the log is the running thread's, valid while it runs; it was just taken out of the slot, so no other `with_txn` on this CPU can reach it until it is put back.
    let r = f(Some(unsafe { &mut *p }));
    cpu.txn.store(p, Ordering::Relaxed);
    r
}

/// Lock owner ids in use (threads' and the CPUs' logs): for tests of reclamation.
pub fn owners_in_use() -> usize {
    OWNERS.in_use()
}
