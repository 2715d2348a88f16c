//! Running compiled grafts in a host process (feature `host`): for `graftc run`, the
//! differential tests and the benchmarks.
//!
//! - [`Loaded::new`] places a [`Compiled`] blob's bytes, unchanged, in memory from
//!   `cranelift-jit`, which is written while writable and then made read+execute (never both).
//! - [`Loaded::call`] fills a [`Context`], points its import table at thunks that forward to
//!   any [`graft_ir::Host`] (so the interpreter's callables, e.g. `MockHost`, serve the JIT
//!   too), and enters through the shared trampoline.
//! - Traps arrive as SIGILL (`ud2`), SIGFPE, SIGSEGV or SIGBUS. The handler installed here
//!   does exactly what the kernel's fault handler does: [`crate::recover`], then set
//!   RIP/RSP/RAX in the `ucontext` and return. Signals it does not own go to the handler that
//!   was installed before it.

use std::boxed::Box;
use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::string::{String, ToString};
use std::sync::{Once, OnceLock};
use std::vec::Vec;
use std::{fmt, ptr};

use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use graft_ir::abi::CALLABLES;
use graft_ir::interp::{DataValue, Host};
use graft_ir::{AbortReason, Type, Verified};

use crate::compile::Compiled;
use crate::context::{Context, RegionDesc, MAX_REGIONS};
use crate::enter::{CodeRegion, recover};
use crate::error::JitError;
use crate::trap::TrapTable;

/// Stack the graft's own frames may use below the caller's frame by default.
pub const DEFAULT_STACK_BUDGET: u64 = 512 * 1024;

/// Why compiled code could not be loaded.
#[derive(Debug)]
pub enum HostError {
    /// Compilation failed.
    Jit(JitError),
    /// `cranelift-jit` could not provide executable memory.
    Memory(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Jit(e) => write!(f, "{e}"),
            HostError::Memory(m) => write!(f, "cannot place code in executable memory: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

impl From<JitError> for HostError {
    fn from(e: JitError) -> Self {
        HostError::Jit(e)
    }
}

/// Compiled code in executable memory of this process, ready to call.
pub struct Loaded {
    module: Option<JITModule>,
    base: u64,
    len: u64,
    functions: Vec<u64>,
    entry: u64,
    traps: TrapTable,
    data_size: u32,
    regions: usize,
    entry_params: Vec<Type>,
    entry_ret: Option<Type>,
    stack_budget: u64,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded").field("base", &self.base).field("len", &self.len).finish_non_exhaustive()
    }
}

impl Loaded {
    /// Place `compiled` in executable memory.
    pub fn new(compiled: &Compiled) -> Result<Loaded, HostError> {
        let mem = |e: cranelift_module::ModuleError| HostError::Memory(e.to_string());
        let isa = crate::isa::build()?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, cranelift_module::default_libcall_names()));
        let sig = module.make_signature();
        let id = module.declare_function("graft_code", Linkage::Local, &sig).map_err(mem)?;
        // No relocations: the blob is position independent by construction.
        module
            .define_function_bytes(id, crate::compile::FUNCTION_ALIGN as u64, compiled.code(), &[])
            .map_err(mem)?;
        module.finalize_definitions().map_err(mem)?;
        let base = module.get_finalized_function(id) as u64;
        Ok(Loaded {
            module: Some(module),
            base,
            len: compiled.code().len() as u64,
            functions: compiled.function_table(base),
            entry: base + u64::from(compiled.entry_offset()),
            traps: compiled.traps().clone(),
            data_size: compiled.data_size(),
            regions: compiled.region_count(),
            entry_params: compiled.entry_params().to_vec(),
            entry_ret: compiled.entry_ret(),
            stack_budget: DEFAULT_STACK_BUDGET,
        })
    }

    /// Compile and load in one step.
    pub fn compile(verified: &Verified) -> Result<Loaded, HostError> {
        Loaded::new(&crate::compile(verified)?)
    }

    /// How much stack below the caller the graft's frames may use before aborting
    /// `StackOverflow`.
    pub fn set_stack_budget(&mut self, bytes: u64) {
        self.stack_budget = bytes;
    }

    /// Address of the code.
    pub fn code_base(&self) -> u64 {
        self.base
    }

    /// Run the entry function with `args`, `regions[0]` the data region (exactly
    /// `data_size` bytes) and `regions[k]` the point's buffer `rk` (all of them), starting
    /// with `*fuel` and leaving the fuel left there: the same contract as
    /// [`graft_ir::interp::run`] on `fn0`, so results compare one to one.
    pub fn call(
        &self,
        args: &[DataValue],
        regions: &mut [&mut [u8]],
        fuel: &mut u64,
        host: &mut dyn Host,
    ) -> Result<Option<DataValue>, AbortReason> {
        self.call_with_stack(None, args, regions, fuel, host)
    }

    /// [`Loaded::call`] on a stack of its own, as the kernel runs grafts: the graft's frames
    /// (and the imports') live in `stack`, whose lowest `reserve` bytes are left for the
    /// imports; a trap still returns to this caller's stack.
    pub fn call_on_stack(
        &self,
        stack: &mut [u8],
        reserve: usize,
        args: &[DataValue],
        regions: &mut [&mut [u8]],
        fuel: &mut u64,
        host: &mut dyn Host,
    ) -> Result<Option<DataValue>, AbortReason> {
        let bottom = stack.as_mut_ptr() as u64;
        let top = (bottom + stack.len() as u64) & !15;
        if reserve as u64 + 64 > top.saturating_sub(bottom) {
            return Err(AbortReason::HostContract);
        }
        self.call_with_stack(Some((bottom + reserve as u64, top)), args, regions, fuel, host)
    }

    fn call_with_stack(
        &self,
        stack: Option<(u64, u64)>,
        args: &[DataValue],
        regions: &mut [&mut [u8]],
        fuel: &mut u64,
        host: &mut dyn Host,
    ) -> Result<Option<DataValue>, AbortReason> {
        let types_ok =
            args.len() == self.entry_params.len() && args.iter().zip(&self.entry_params).all(|(a, t)| a.ty() == *t);
        let regions_ok = regions.len() == self.regions + 1
            && regions.len() <= MAX_REGIONS + 1
            && regions.first().is_some_and(|d| d.len() == self.data_size as usize);
        if !types_ok || !regions_ok {
            return Err(AbortReason::HostContract);
        }
        install_signal_handlers();

        let mut raw_args = [0u64; crate::ENTRY_ARGS];
        for (slot, a) in raw_args.iter_mut().zip(args) {
            *slot = a.to_bits();
        }
        let mut slot = HostSlot { host };
        let mut ctx = Context::empty();
        ctx.fuel = *fuel;
        ctx.data_base = regions[0].as_mut_ptr() as u64;
        ctx.data_size = u64::from(self.data_size);
        for (desc, r) in ctx.regions.iter_mut().zip(regions.iter_mut().skip(1)) {
            *desc = RegionDesc { base: r.as_mut_ptr() as u64, len: r.len() as u64 };
        }
        ctx.functions = self.functions.as_ptr();
        ctx.imports = import_table().as_ptr();
        ctx.host = (&raw mut slot).cast::<c_void>();
        let marker = 0u8;
        let (limit, top) = stack.unwrap_or(((&raw const marker as u64).saturating_sub(self.stack_budget), 0));
        ctx.stack_limit = limit;

        let ctx_ptr = &raw mut ctx;
        let active = Active { ctx: ctx_ptr, base: self.base, len: self.len, traps: &self.traps };
        let previous = ACTIVE.with(|a| a.replace(&raw const active));
        // SAFETY: `entry` is the entry function of code placed unchanged in executable memory owned by `self`; the context points at live tables, regions and host slot that outlive the call; the argument count was checked against the entry signature; the stack limit leaves `stack_budget` bytes below this frame (or the reserve of the caller's own stack, which nothing else uses during the call); and faults in the code are recovered by the handler installed above through `ACTIVE`.
        let result = unsafe {
            if top == 0 {
                crate::enter(self.entry, ctx_ptr, &raw_args)
            } else {
                crate::enter_on_stack(self.entry, ctx_ptr, &raw_args, top)
            }
        };
        ACTIVE.with(|a| a.set(previous));
        *fuel = ctx.fuel;
        let bits = result?;
        Ok(self.entry_ret.map(|t| DataValue::from_bits(t, bits)))
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: no call is running (calls borrow `self`) and no address into the code escapes `self`.
            unsafe { module.free_memory() };
        }
    }
}

/// What the import thunks find behind `Context::host`.
struct HostSlot<'a> {
    host: &'a mut dyn Host,
}

/// The call in progress on this thread, for the signal handler.
struct Active {
    ctx: *mut Context,
    base: u64,
    len: u64,
    traps: *const TrapTable,
}

std::thread_local! {
    // Const-initialised and without a destructor: a plain TLS slot, safe to read in a
    // signal handler.
    static ACTIVE: Cell<*const Active> = const { Cell::new(ptr::null()) };
}

/// Forward an import call to the `Host` in the context's slot.
///
/// # Safety
/// `ctx` must be the context of a call made by [`Loaded::call`].
unsafe fn dispatch(ctx: *mut Context, id: usize, raw: &[i64]) -> i64 {
    // SAFETY: the caller guarantees `ctx` is live; compiled code is suspended in the import call, so nothing else accesses it.
    let ctx = unsafe { &mut *ctx };
    // SAFETY: `Loaded::call` stores a pointer to its live `HostSlot` in `host`.
    let slot = unsafe { &mut *ctx.host.cast::<HostSlot<'_>>() };
    let Some(c) = CALLABLES.get(id).filter(|c| c.params.len() == raw.len()) else {
        ctx.set_abort(AbortReason::HostContract);
        return 0;
    };
    let args: Vec<DataValue> = c.params.iter().zip(raw).map(|(&t, &x)| DataValue::from_bits(t, x as u64)).collect();
    // A panic must not unwind into machine code without unwind tables.
    match catch_unwind(AssertUnwindSafe(|| slot.host.call(c, &args))) {
        Ok(Ok(r)) => match (c.ret, r) {
            (None, None) => 0,
            (Some(t), Some(v)) if v.ty() == t => v.to_bits() as i64,
            _ => {
                ctx.set_abort(AbortReason::HostContract);
                0
            }
        },
        Ok(Err(reason)) => {
            ctx.set_abort(reason);
            0
        }
        Err(_) => {
            ctx.set_abort(AbortReason::HostContract);
            0
        }
    }
}

macro_rules! thunks {
    ($($name:ident($($a:ident),*);)*) => {$(
        unsafe extern "sysv64" fn $name<const ID: usize>(ctx: *mut Context $(, $a: i64)*) -> i64 {
            // SAFETY: only compiled code calls thunks, with the context of its call.
            unsafe { dispatch(ctx, ID, &[$($a),*]) }
        }
    )*};
}

thunks! {
    thunk0();
    thunk1(a);
    thunk2(a, b);
    thunk3(a, b, c);
    thunk4(a, b, c, d);
    thunk5(a, b, c, d, e);
}

/// For ids past the table or callables with more parameters than the thunks take.
unsafe extern "sysv64" fn unsupported(ctx: *mut Context) -> i64 {
    // SAFETY: only compiled code calls thunks, with the context of its call.
    unsafe { (*ctx).set_abort(AbortReason::HostContract) };
    0
}

fn thunk_for<const ID: usize>() -> u64 {
    let f: *const () = match CALLABLES.get(ID).map(|c| c.params.len()) {
        Some(0) => thunk0::<ID> as *const (),
        Some(1) => thunk1::<ID> as *const (),
        Some(2) => thunk2::<ID> as *const (),
        Some(3) => thunk3::<ID> as *const (),
        Some(4) => thunk4::<ID> as *const (),
        Some(5) => thunk5::<ID> as *const (),
        _ => unsupported as *const (),
    };
    f as u64
}

macro_rules! thunk_table {
    ($($id:literal)*) => { [$(thunk_for::<$id>()),*] };
}

/// The host's import table, indexed by `Callable::id`, covering every id of the ABI table.
pub fn import_table() -> &'static [u64] {
    static TABLE: OnceLock<Vec<u64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = thunk_table!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
            .to_vec();
        t.resize(t.len().max(CALLABLES.len()), unsupported as *const () as u64);
        t
    })
}

const SIGNALS: [libc::c_int; 4] = [libc::SIGILL, libc::SIGFPE, libc::SIGSEGV, libc::SIGBUS];

/// The handlers that were installed before ours, in `SIGNALS` order.
static PREVIOUS: OnceLock<Box<[libc::sigaction; 4]>> = OnceLock::new();

fn install_signal_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: all-zero is a valid `sigaction` (no handler, empty mask, no flags).
        let mut previous: Box<[libc::sigaction; 4]> = Box::new(unsafe { std::mem::zeroed() });
        for (i, &sig) in SIGNALS.iter().enumerate() {
            // SAFETY: all-zero is a valid `sigaction`; the fields are set below.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_fault as *const () as usize;
            // ONSTACK: run on the alternate stack if the thread has one (std sets one up).
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `action` is fully initialised; `previous[i]` receives the old action.
            unsafe {
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, &mut previous[i]);
            }
        }
        let _ = PREVIOUS.set(previous);
    });
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    let active = ACTIVE.with(|a| a.get());
    if !active.is_null() && !uctx.is_null() {
        // SAFETY: the kernel passes a valid `ucontext_t` to SA_SIGINFO handlers; `active` points at the `Active` of a `Loaded::call` frame that is still on this thread's stack (it is reset before that frame returns), whose pointers are live.
        unsafe {
            let uc = &mut *uctx.cast::<libc::ucontext_t>();
            let gregs = &mut uc.uc_mcontext.gregs;
            let a = &*active;
            let code = CodeRegion { base: a.base, len: a.len, traps: &*a.traps };
            let rip = gregs[libc::REG_RIP as usize] as u64;
            if let Some(r) = recover(&*a.ctx, &code, rip) {
                gregs[libc::REG_RIP as usize] = r.rip as i64;
                gregs[libc::REG_RSP as usize] = r.rsp as i64;
                gregs[libc::REG_RAX as usize] = r.rax as i64;
                return;
            }
        }
    }
    chain(sig, info, uctx);
}

/// Hand a signal that is not ours to the previous handler, or restore the default action
/// and return so that the faulting instruction faults again and the default happens.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut c_void) {
    let previous = PREVIOUS.get().and_then(|p| SIGNALS.iter().position(|&s| s == sig).map(|i| p[i]));
    match previous {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void);
                // SAFETY: with SA_SIGINFO the previous handler has this signature.
                let f: Handler = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, uctx);
            } else {
                // SAFETY: without SA_SIGINFO the previous handler takes only the signal.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // SAFETY: all-zero with SIG_DFL is the default action.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
    }
}
