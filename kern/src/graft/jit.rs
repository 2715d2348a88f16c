//! Running grafts as machine code: the kernel side of `graft-jit`.
//!
//! At load, a verified module is compiled by Cranelift inside the kernel, and the code is
//! published read-only + executable (`memory::publish_code`). A call runs on the per-CPU graft
//! stack (guard page below, a stack limit the code checks) through `graft_jit::enter`, with a
//! `Context` whose import table points at the kernel's callables. While it runs:
//! - a CPU exception at a trap site of the graft's code (a check that failed) or anywhere else
//!   in it is turned into an abort by `on_fault`, which resumes the thread at the end of
//!   `enter` with the reason;
//! - interrupts are enabled, and the timer's `watchdog` aborts a call that ran longer than its
//!   wall-clock limit: at once if the graft's own code was interrupted, or, if a callable was
//!   running, as soon as it returns (the compiled code checks the abort slot after every call).
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::c_void;

use graft_ir::abi::{self, Callable};
use graft_ir::interp::DataValue;
use graft_ir::{AbortReason, Verified};
use graft_jit::{CodeRegion, Compiled, Context, JitError, RegionDesc};
use spin::Once;

use super::callables::{CallCtx, Registry};
use crate::arch::trap::TrapFrame;
use crate::memory::{self, ExecCode, MapError};

/// A graft's machine code, published, with what calls need (worked out once, at load).
pub struct JitCode {
    exec: ExecCode,
    compiled: Compiled,
    functions: Vec<u64>,
    entry: u64,
    /// The graft stack: its lowest address and its top.
    stack: (u64, u64),
    imports: *const u64,
}

// SAFETY: `imports` points at the immutable, 'static import table; everything else is owned.
unsafe impl Send for JitCode {}
// SAFETY: as above; calls never mutate a JitCode.
unsafe impl Sync for JitCode {}

#[derive(Debug)]
pub enum CompileError {
    Jit(JitError),
    Map(MapError),
    /// The compiler did not run (it returned without a result).
    NotRun,
}

impl core::fmt::Display for CompileError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            CompileError::Jit(e) => write!(f, "compiling the graft failed: {e}"),
            CompileError::Map(e) => write!(f, "no memory for the graft's code: {e}"),
            CompileError::NotRun => write!(f, "the compiler did not run"),
        }
    }
}

impl JitCode {
    pub fn compile(verified: &Verified) -> Result<JitCode, CompileError> {
        Self::compile_with(verified, &graft_jit::Options::default())
    }

    /// Benchmark builds only: compile with some sandbox checks left out, to measure them.
    #[cfg(feature = "bench")]
    pub fn compile_unchecked(verified: &Verified, unchecked: graft_jit::Unchecked) -> Result<JitCode, CompileError> {
        Self::compile_with(verified, &graft_jit::Options { unchecked, ..graft_jit::Options::default() })
    }

    fn compile_with(verified: &Verified, options: &graft_jit::Options) -> Result<JitCode, CompileError> {
        let stack = match STACK.call_once(|| memory::map_stack(GRAFT_STACK)) {
            Ok(s) => *s,
            Err(e) => return Err(CompileError::Map(*e)),
        };
        let compiled = compile_on_big_stack(verified, options)?;
        let exec = memory::publish_code(compiled.code()).map_err(CompileError::Map)?;
        let functions = compiled.function_table(exec.base().as_u64());
        let entry = exec.base().as_u64() + u64::from(compiled.entry_offset());
        Ok(JitCode { exec, compiled, functions, entry, stack, imports: imports().as_ptr() })
    }

    pub fn code_size(&self) -> usize {
        self.exec.len()
    }

}

/// Cranelift recurses deeply: compiling runs on a stack of its own (thread kernel stacks are
/// small), with a guard page below it. The kernel does not preempt itself, so one suffices.
const COMPILE_STACK: u64 = 1024 * 1024;
static COMPILE_STACK_TOP: Once<Result<u64, MapError>> = Once::new();

fn compile_on_big_stack(verified: &Verified, options: &graft_jit::Options) -> Result<Compiled, CompileError> {
    let top = match COMPILE_STACK_TOP.call_once(|| memory::map_stack(COMPILE_STACK).map(|(_, top)| top)) {
        Ok(top) => *top,
        Err(e) => return Err(CompileError::Map(*e)),
    };
    type Job<'a> = (&'a Verified, &'a graft_jit::Options, Option<Result<Compiled, JitError>>);
    let mut job: Job = (verified, options, None);
    extern "C" fn run(job: *mut c_void) {
        // SAFETY: `compile_on_big_stack` passes its live `job`.
        let job = unsafe { &mut *(job as *mut Job) };
        job.2 = Some(graft_jit::compile_with(job.0, job.1));
    }
    let nested = crate::arch::context::on_stack_below(top, COMPILE_STACK);
    if nested {
        // Already on the compile stack (cannot happen today: compiling never loads a graft).
        run(&mut job as *mut _ as *mut c_void);
    } else {
        // SAFETY: the stack is mapped, ours alone (the kernel does not preempt itself), and `job` lives across the call.
        unsafe { crate::arch::context::call_on_stack(top, run, &mut job as *mut _ as *mut c_void) };
    }
    match job.2 {
        Some(r) => r.map_err(CompileError::Jit),
        None => Err(CompileError::NotRun),
    }
}

/// Size of the graft stack, and how much of it is kept for callables (which run ordinary
/// kernel code on it): the graft's own frames must stay above `bottom + CALLABLE_RESERVE`.
const GRAFT_STACK: u64 = 128 * 1024;
const CALLABLE_RESERVE: u64 = 64 * 1024;

static STACK: Once<Result<(u64, u64), MapError>> = Once::new();

/// What the fault handler and the watchdog need to know about the call in progress.
#[derive(Clone, Copy)]
struct Active {
    ctx: *mut Context,
    base: u64,
    len: u64,
    traps: *const graft_jit::TrapTable,
    /// Time-stamp counter value past which the watchdog aborts the call.
    deadline_tsc: u64,
}

/// The call in progress on this (only) CPU. Written only with interrupts disabled; read by the
/// fault and timer handlers, which run with interrupts disabled too.
struct ActiveSlot(UnsafeCell<Option<Active>>);

// SAFETY: one CPU; every access happens with interrupts disabled (see above).
unsafe impl Sync for ActiveSlot {}

static ACTIVE: ActiveSlot = ActiveSlot(UnsafeCell::new(None));

fn active() -> Option<Active> {
    // SAFETY: read with interrupts disabled (all callers are interrupt handlers or run inside without_interrupts).
    unsafe { *ACTIVE.0.get() }
}

/// The kernel objects a call's imports work on.
struct HostCtx<'a, 'b> {
    call: CallCtx<'a>,
    registry: &'b Registry,
}

/// Runs the graft's entry with `args` and `regions` (`regions[0]` the data region, then the
/// point's buffers), `fuel`, and `wall_tsc` time-stamp-counter ticks of wall-clock time. Returns the entry's i32 result or
/// the abort reason; `fuel` is left with what remains.
pub fn call(
    code: &JitCode,
    call: CallCtx,
    registry: &Registry,
    args: &[DataValue],
    regions: &mut [&mut [u8]],
    fuel: &mut u64,
    wall_tsc: u64,
) -> Result<i32, AbortReason> {
    if active().is_some() {
        // A graft reached from inside a graft's callable would need its own stack and
        // context; no callable reaches a graft point yet.
        return Err(AbortReason::HostContract);
    }
    let (bottom, top) = code.stack;
    let Some((data, buffers)) = regions.split_first_mut() else {
        return Err(AbortReason::HostContract);
    };
    let mut argv = [0u64; 8];
    if args.len() != code.compiled.entry_params().len() || args.len() > argv.len() || buffers.len() > ctx_regions() {
        return Err(AbortReason::HostContract);
    }
    for (slot, a) in argv.iter_mut().zip(args) {
        *slot = a.to_bits();
    }
    let mut host = HostCtx { call, registry };
    let mut ctx = Context::empty();
    ctx.fuel = *fuel;
    ctx.data_base = data.as_mut_ptr() as u64;
    ctx.data_size = data.len() as u64;
    for (desc, buf) in ctx.regions.iter_mut().zip(buffers.iter_mut()) {
        *desc = RegionDesc { base: buf.as_mut_ptr() as u64, len: buf.len() as u64 };
    }
    ctx.functions = code.functions.as_ptr();
    ctx.imports = code.imports;
    ctx.host = &mut host as *mut HostCtx as *mut c_void;
    ctx.stack_limit = bottom + CALLABLE_RESERVE;
    // The data region's size is fixed by the module: anything else is a kernel bug.
    if ctx.data_size != u64::from(code.compiled.data_size()) {
        return Err(AbortReason::HostContract);
    }
    let was_enabled = crate::arch::interrupts_enabled();
    crate::arch::disable_interrupts();
    // SAFETY: interrupts are off; the slot is read only by handlers on this CPU.
    unsafe {
        *ACTIVE.0.get() = Some(Active {
            ctx: &mut ctx,
            base: code.exec.base().as_u64(),
            len: code.exec.len() as u64,
            traps: code.compiled.traps(),
            deadline_tsc: crate::time::rdtsc().saturating_add(wall_tsc),
        });
    }
    let mut job = (code.entry, &mut ctx as *mut Context, argv.as_ptr(), Ok(0u64));
    // Interrupts on while the graft runs, so that the watchdog can stop it.
    crate::arch::enable_interrupts();
    // SAFETY: the stack is ours alone (no graft runs nested); `job` outlives the call.
    unsafe { crate::arch::context::call_on_stack(top, run_job, &mut job as *mut _ as *mut c_void) };
    crate::arch::disable_interrupts();
    // SAFETY: interrupts are off, as above.
    unsafe { *ACTIVE.0.get() = None };
    if was_enabled {
        crate::arch::enable_interrupts();
    }
    *fuel = ctx.fuel;
    job.3.map(|bits| bits as i32)
}

const fn ctx_regions() -> usize {
    graft_jit::MAX_REGIONS
}

/// Whether a graft call is in progress (the scheduler must not switch threads under it).
pub fn is_active() -> bool {
    crate::arch::without_interrupts(|| active().is_some())
}

type Job = (u64, *mut Context, *const u64, Result<u64, AbortReason>);

extern "C" fn run_job(job: *mut c_void) {
    // SAFETY: `call` passes a live `Job`, on the graft stack, with the context filled for this code; faults inside are recovered by `on_fault`, which resumes inside `enter`.
    unsafe {
        let job = &mut *(job as *mut Job);
        job.3 = graft_jit::enter(job.0, job.1, job.2);
    }
}

/// Called by the exception handler for a fault in kernel mode. If it happened in graft code
/// during a call, redirects the frame so the call returns its abort reason; returns true.
pub fn on_fault(frame: &mut TrapFrame) -> bool {
    let Some(a) = active() else { return false };
    // SAFETY: the context and trap table outlive the call, and a call is in progress.
    let (ctx, traps) = unsafe { (&*a.ctx, &*a.traps) };
    let region = CodeRegion { base: a.base, len: a.len, traps };
    match graft_jit::recover(ctx, &region, frame.rip) {
        Some(r) => {
            frame.rip = r.rip;
            frame.rsp = r.rsp;
            frame.rax = r.rax;
            true
        }
        None => false,
    }
}

/// Called on every timer tick: aborts a call past its deadline.
pub fn watchdog(frame: &mut TrapFrame) {
    let Some(a) = active() else { return };
    if crate::time::rdtsc() < a.deadline_tsc {
        return;
    }
    // SAFETY: as in `on_fault`.
    let ctx = unsafe { &mut *a.ctx };
    if frame.rip.wrapping_sub(a.base) < a.len {
        if let Some(r) = graft_jit::abort_redirect(ctx, AbortReason::Watchdog) {
            frame.rip = r.rip;
            frame.rsp = r.rsp;
            frame.rax = r.rax;
        }
    } else if ctx.abort == 0 {
        // Inside a callable (which may hold kernel locks): the code checks the slot as soon as
        // the callable returns.
        ctx.set_abort(AbortReason::Watchdog);
    }
}

/// The import table: one entry per callable of the ABI, by `Callable::id`.
fn imports() -> &'static [u64] {
    static TABLE: Once<Vec<u64>> = Once::new();
    TABLE.call_once(|| {
        let stubs: [u64; 16] = [
            import_0 as *const () as u64, import_1 as *const () as u64, import_2 as *const () as u64,
            import_3 as *const () as u64, import_4 as *const () as u64, import_5 as *const () as u64,
            import_6 as *const () as u64, import_7 as *const () as u64, import_8 as *const () as u64,
            import_9 as *const () as u64, import_10 as *const () as u64, import_11 as *const () as u64,
            import_12 as *const () as u64, import_13 as *const () as u64, import_14 as *const () as u64,
            import_15 as *const () as u64,
        ];
        abi::CALLABLES.iter().map(|c| stubs.get(c.id as usize).copied().unwrap_or(0)).collect()
    })
}

macro_rules! import_stubs {
    ($($name:ident = $id:expr),*) => {$(
        /// Import stub: compiled code calls it with the context and the arguments.
        unsafe extern "sysv64" fn $name(ctx: *mut Context, a0: i64, a1: i64, a2: i64, a3: i64, a4: i64, a5: i64) -> i64 {
            // SAFETY: only compiled graft code calls this, with the context of its call.
            unsafe { import_call($id, ctx, [a0, a1, a2, a3, a4, a5]) }
        }
    )*};
}
import_stubs!(import_0 = 0, import_1 = 1, import_2 = 2, import_3 = 3, import_4 = 4, import_5 = 5,
    import_6 = 6, import_7 = 7, import_8 = 8, import_9 = 9, import_10 = 10, import_11 = 11,
    import_12 = 12, import_13 = 13, import_14 = 14, import_15 = 15);

unsafe fn import_call(id: usize, ctx: *mut Context, args: [i64; 6]) -> i64 {
    // SAFETY: `ctx` is the live context of the running call and its `host` our HostCtx.
    let ctx = unsafe { &mut *ctx };
    // SAFETY: `call` set `host` to its HostCtx, which outlives the call.
    let host = unsafe { &mut *(ctx.host as *mut HostCtx) };
    let Some(c): Option<&Callable> = abi::CALLABLES.get(id) else {
        ctx.set_abort(AbortReason::HostContract);
        return 0;
    };
    let n = c.params.len().min(6);
    let bits: [u64; 6] = args.map(|a| a as u64);
    // Callables run with interrupts off, like all kernel code outside grafts.
    match crate::arch::without_interrupts(|| host.registry.call(c, &mut host.call, &bits[..n])) {
        Ok(v) => v as i64,
        Err(reason) => {
            if ctx.abort == 0 {
                ctx.set_abort(reason);
            }
            0
        }
    }
}
