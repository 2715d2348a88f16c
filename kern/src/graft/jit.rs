//! Running grafts as machine code: the kernel side of `graft-jit`.
//!
//! At load, a verified module is compiled by Cranelift inside the kernel, and the code is
//! published read-only + executable (`memory::publish_code`); the graft's `Instance` holds the
//! code, its data region and a context filled once. A call runs on the per-CPU graft stack
//! (guard page below, a stack limit the code checks) through `graft_jit::enter_on_stack`, with
//! the instance's context, whose import table points at the kernel's callables. While it runs:
//! - a CPU exception at a trap site of the graft's code (a check that failed) or anywhere else
//!   in it is turned into an abort by `on_fault`, which resumes the thread at the end of
//!   `enter` with the reason;
//! - interrupts are enabled, and the timer's `watchdog` aborts a call that ran through more
//!   timer ticks than its wall-clock limit allows: at once if the graft's own code was interrupted, or, if a callable was
//!   running, as soon as it returns (the compiled code checks the abort slot after every call).
use alloc::vec::Vec;
use core::ffi::c_void;
use core::sync::atomic::Ordering;

use graft_ir::abi::{self, Callable};
use graft_ir::{AbortReason, Verified};
use graft_jit::{CodeRegion, Compiled, Context, ENTRY_ARGS, JitError, RegionDesc};
use spin::Once;

use super::callables::{CallCtx, Registry};
use super::state::ProcessId;
use super::txn::TxnLog;
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
    /// How many buffers (`r1..`) its graft point passes.
    regions: usize,
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
    /// The entry takes more parameters, or the point more buffers, than a call passes.
    Shape { params: usize, regions: usize },
}

impl core::fmt::Display for CompileError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            CompileError::Jit(e) => write!(f, "compiling the graft failed: {e}"),
            CompileError::Map(e) => write!(f, "no memory for the graft's code: {e}"),
            CompileError::NotRun => write!(f, "the compiler did not run"),
            CompileError::Shape { params, regions } => write!(
                f,
                "an entry of {params} parameters and {regions} buffers; calls pass at most {ENTRY_ARGS} and {}",
                graft_jit::MAX_REGIONS
            ),
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
        let stack = match crate::cpu::this().graft_stack.call_once(|| memory::map_stack(GRAFT_STACK)) {
            Ok(s) => *s,
            Err(e) => return Err(CompileError::Map(*e)),
        };
        let compiled = compile_on_big_stack(verified, options)?;
        let exec = memory::publish_code(compiled.code()).map_err(CompileError::Map)?;
        let functions = compiled.function_table(exec.base().as_u64());
        let entry = exec.base().as_u64() + u64::from(compiled.entry_offset());
        let entry_params = compiled.entry_params().len();
        let regions = compiled.region_count();
        if entry_params > ENTRY_ARGS || regions > graft_jit::MAX_REGIONS {
            return Err(CompileError::Shape { params: entry_params, regions });
        }
        Ok(JitCode { exec, compiled, functions, entry, stack, imports: imports().as_ptr(), regions })
    }

    pub fn code_size(&self) -> usize {
        self.exec.len()
    }

    /// An instance of the code for a graft of `owner`: its data region `data` (exactly the
    /// module's `data_size` bytes) and a context filled with everything that stays the same
    /// from call to call. `None` if the data region does not fit the code.
    pub fn instance(self, data: Vec<u8>, owner: ProcessId, memory_limit: u64, registry: &'static Registry) -> Option<Instance> {
        if data.len() != self.compiled.data_size() as usize {
            return None;
        }
        let host = HostCtx { owner, memory_limit, registry, txn: core::ptr::null_mut() };
        let mut inst = Instance { ctx: Context::empty(), code: self, data, host, ticks: 0, max_ticks: u64::MAX };
        inst.ctx.data_base = inst.data.as_mut_ptr() as u64;
        inst.ctx.data_size = inst.data.len() as u64;
        inst.ctx.functions = inst.code.functions.as_ptr();
        inst.ctx.imports = inst.code.imports;
        inst.ctx.stack_limit = inst.code.stack.0 + CALLABLE_RESERVE;
        Some(inst)
    }
}

/// A graft's code with its data region and the context its calls use, prepared once: a call
/// only sets the fuel, the buffers and the transaction. The data never moves (the vector is
/// never resized: only slices of it are handed out), so the context's pointer to it stays
/// valid.
pub struct Instance {
    ctx: Context,
    code: JitCode,
    data: Vec<u8>,
    host: HostCtx,
    /// Timer ticks the call in progress has run through (the watchdog counts them), and how
    /// many it may.
    ticks: u64,
    max_ticks: u64,
}

// SAFETY: the context's pointers lead to the instance's own data and code tables; the buffer
// and transaction pointers are set only for the duration of a call.
unsafe impl Send for Instance {}

impl Instance {
    /// The data region `r0`.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Bytes of machine code.
    pub fn code_size(&self) -> usize {
        self.code.code_size()
    }

    /// Bytes of `mem.alloc` memory the owner may hold (the callables check it), and the
    /// wall-clock time a call may take.
    pub fn set_limits(&mut self, memory: u64, wall_ns: u64) {
        self.host.memory_limit = memory;
        // One tick more than the limit: the first tick may come at once.
        self.max_ticks = crate::time::ns_to_ticks(wall_ns).saturating_add(1);
    }
}

/// Cranelift recurses deeply: compiling runs on a stack of its own (thread kernel stacks are
/// small), with a guard page below it (`cpu::Cpu::compile_stack`). The kernel does not preempt
/// itself, so one per CPU suffices.
const COMPILE_STACK: u64 = 1024 * 1024;

fn compile_on_big_stack(verified: &Verified, options: &graft_jit::Options) -> Result<Compiled, CompileError> {
    let top = match crate::cpu::this().compile_stack.call_once(|| memory::map_stack(COMPILE_STACK).map(|(_, top)| top)) {
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
// The graft's own frames get what graftc run gives them.
const _: () = assert!(GRAFT_STACK - CALLABLE_RESERVE == graft_ir::limits::GRAFT_STACK_FRAMES);

/// The instance whose call is in progress on this CPU (`cpu::Cpu::graft_call`), or `None`.
/// Written only with interrupts disabled; read by the fault and timer hooks, which run with
/// interrupts disabled too.
#[inline(always)]
fn active() -> Option<*mut Instance> {
    let a = crate::cpu::this().graft_call.load(Ordering::Relaxed);
    (!a.is_null()).then_some(a)
}

/// What a call's imports work on: the graft's owner and limit, the callables, and (during a
/// call) the calling thread's transaction.
struct HostCtx {
    owner: ProcessId,
    memory_limit: u64,
    registry: &'static Registry,
    txn: *mut TxnLog,
}

/// Runs the graft's entry with `args` and the point's `buffers` (`r1..`) on instance `inst`
/// of `code`, with `fuel` and `wall_tsc` time-stamp-counter ticks of wall-clock time. Returns
/// the entry's i32 result or the abort reason; `fuel` is left with what remains.
///
/// Interrupts are on while the graft's code runs (for the watchdog), and as the caller had
/// them afterwards.
#[inline(always)]
pub fn call(
    inst: &mut Instance,
    txn: &mut TxnLog,
    args: &[u64; ENTRY_ARGS],
    buffers: &mut [&mut [u8]],
    fuel: &mut u64,
) -> Result<i32, AbortReason> {
    // The buffers must be those of the code's graft point (`args` holds a value for every
    // parameter the entry can have); and no graft may already be running (a graft reached
    // from inside a graft's callable would need a stack of its own: no callable reaches a
    // graft point yet).
    if buffers.len() != inst.code.regions || active().is_some() {
        return Err(AbortReason::HostContract);
    }
    inst.host.txn = txn;
    inst.ticks = 0;
    let ctx = &mut inst.ctx;
    ctx.fuel = *fuel;
    // Exactly the point's buffers: the descriptors past them stay empty from `instance`, and
    // the code never reads them (it only reaches the point's regions).
    for (desc, b) in ctx.regions.iter_mut().zip(buffers.iter_mut()) {
        *desc = RegionDesc { base: b.as_mut_ptr() as u64, len: b.len() as u64 };
    }
    let (entry, top) = (inst.code.entry, inst.code.stack.1);
    let inst: *mut Instance = inst;
    let was_enabled = crate::arch::interrupts_enabled();
    // One store, which an interrupt sees either before or after; only this CPU's hooks read it.
    crate::cpu::this().graft_call.store(inst, Ordering::Relaxed);
    // Interrupts on while the graft runs, so that the watchdog can stop it.
    if !was_enabled {
        crate::arch::enable_interrupts();
    }
    // SAFETY: the code is this crate's compiled entry, published unchanged; the context was filled by `instance` for this code and for this call, with buffers and a transaction that outlive it; `args` holds the entry's arguments; the graft stack is ours alone (no graft runs nested, the kernel does not preempt itself) and its limit leaves `CALLABLE_RESERVE` for the imports; faults are recovered by `on_fault` through the CPU's `graft_call`.
    let r = unsafe { graft_jit::enter_on_stack(entry, &raw mut (*inst).ctx, args, top) };
    if !was_enabled {
        crate::arch::disable_interrupts();
    }
    crate::cpu::this().graft_call.store(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: the call is over and the slot cleared, so the instance is ours alone again.
    let inst = unsafe { &mut *inst };
    *fuel = inst.ctx.fuel;
    match r {
        Ok(bits) => Ok(bits as i32),
        Err(reason) => {
            // The abort slot must be clear for the next call (an import or `abort` set it).
            inst.ctx.abort = 0;
            Err(reason)
        }
    }
}

/// Whether a graft call is in progress (the scheduler must not switch threads under it).
pub fn is_active() -> bool {
    crate::arch::without_interrupts(|| active().is_some())
}

/// Called by the exception handler for a fault in kernel mode. If it happened in graft code
/// during a call, redirects the frame so the call returns its abort reason; returns true.
pub fn on_fault(frame: &mut TrapFrame) -> bool {
    let Some(a) = active() else { return false };
    // SAFETY: a call is in progress on this instance; the handler only reads it.
    let (ctx, code) = unsafe { (&(*a).ctx, &(*a).code) };
    let region = CodeRegion { base: code.exec.base().as_u64(), len: code.exec.len() as u64, traps: code.compiled.traps() };
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
    // SAFETY: a call is in progress on this instance; the interrupted code does not touch the fields written here until the handler returns.
    let inst = unsafe { &mut *a };
    inst.ticks += 1;
    if inst.ticks <= inst.max_ticks {
        return;
    }
    let (ctx, code) = (&mut inst.ctx, &inst.code);
    if ctx.recovery_rsp == 0 {
        // Not inside the trampoline yet, or already out of it: nothing to stop.
        return;
    }
    if frame.rip.wrapping_sub(code.exec.base().as_u64()) < code.exec.len() as u64 {
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

/// The import table: one stub per callable of the ABI, by `Callable::id` (the stubs follow the
/// table; `callables::MAX_IMPORT_STUBS` bounds it at compile time).
fn imports() -> &'static [u64] {
    static TABLE: Once<[u64; abi::CALLABLE_TABLE.len()]> = Once::new();
    TABLE.call_once(|| crate::graft::callables::import_stub_table!(Context, import_call))
}

unsafe fn import_call(id: usize, ctx: *mut Context, args: [i64; 6]) -> i64 {
    // The context is the `ctx` field of the instance whose call is running.
    let inst = ctx.cast::<u8>().wrapping_sub(core::mem::offset_of!(Instance, ctx)).cast::<Instance>();
    // SAFETY: only `call` runs compiled code, always with the context of an instance, which it holds (with the transaction `call` stored in it) for the whole call; the fields borrowed here are disjoint.
    let (ctx, host, txn) = unsafe {
        let host = &(*inst).host;
        (&mut (*inst).ctx, host, &mut *host.txn)
    };
    let mut call = CallCtx { owner: host.owner, txn, memory_limit: host.memory_limit };
    let Some(c): Option<&Callable> = abi::CALLABLES.get(id) else {
        ctx.set_abort(AbortReason::HostContract);
        return 0;
    };
    let n = c.params.len().min(6);
    let bits: [u64; 6] = args.map(|a| a as u64);
    // Callables run with interrupts off, like all kernel code outside grafts.
    match crate::arch::without_interrupts(|| host.registry.call(c, &mut call, &bits[..n])) {
        Ok(v) => v as i64,
        Err(reason) => {
            if ctx.abort == 0 {
                ctx.set_abort(reason);
            }
            0
        }
    }
}
