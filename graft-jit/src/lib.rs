//! The graft JIT: lowers a [`Verified`](graft_ir::Verified) graft IR module to x86-64 machine
//! code with Cranelift, inserting the sandbox checks (region masking and bounds, fuel, call
//! depth, stack limit, guarded division) as it goes.
//!
//! The output ([`Compiled`]) is one contiguous, relocation-free code blob, the offset of each
//! function (the entry `fn0` first) and a trap table mapping trapping instructions to
//! [`AbortReason`]s. It is `no_std` + `alloc`: the same lowering runs in the kernel, in
//! `graftc run`, in differential tests against the reference interpreter, and in host
//! benchmarks. It does not verify (graft-ir does), allocate executable memory (the kernel's
//! loader or the host runner does) or implement callables (the kernel does).
//!
//! # Using it in a kernel
//! ```ignore
//! // Load: verify, compile, copy the code into memory that becomes executable (never W+X).
//! let compiled = graft_jit::compile(&verified)?;                 // Err(JitError): refuse the blob
//! let base = code_memory.publish(compiled.code());               // any address, no relocation
//! let functions = compiled.function_table(base);                 // keep alive with the code
//! // Call:
//! let mut ctx = graft_jit::Context::empty();
//! ctx.fuel = module_fuel;
//! ctx.data_base = data.as_mut_ptr() as u64;  ctx.data_size = compiled.data_size() as u64;
//! ctx.regions[0] = RegionDesc { base: buf.as_ptr() as u64, len: buf.len() as u64 };   // r1
//! ctx.functions = functions.as_ptr();  ctx.imports = KERNEL_IMPORTS.as_ptr();  // by Callable::id
//! ctx.host = current_transaction as *mut _;  ctx.stack_limit = graft_stack_bottom + RESERVE;
//! compiled.check_context(&ctx)?;
//! let args = [n as u64, 0, 0];                           // ENTRY_ARGS slots, unused ones 0
//! per_cpu.active_graft = Some((&ctx as *const _, compiled.at(base)));   // for the fault handler
//! // SAFETY: the code is placed unchanged, `ctx` is filled for it, faults go to `recover`.
//! let r = unsafe { graft_jit::enter(base + compiled.entry_offset() as u64, &mut ctx, &args) };
//! per_cpu.active_graft = None;
//! // r: Ok(result bits) or Err(AbortReason); ctx.fuel is the fuel left.
//!
//! // In the #UD / #DE / #PF / #GP handler, when the faulting RIP is in ring 0:
//! if let Some((ctx, code)) = per_cpu.active_graft {
//!     // SAFETY: the context outlives the call that is in progress.
//!     if let Some(r) = graft_jit::recover(unsafe { &*ctx }, &code, frame.rip) {
//!         frame.rip = r.rip; frame.rsp = r.rsp; frame.rax = r.rax;
//!         return;                                                  // iretq resumes in `enter`
//!     }
//! }
//! ```
//! `docs/graft-jit.md` has the context layout, the calling convention, the trap codes and the
//! full fault-recovery contract. Imports are `extern "sysv64" fn(*mut Context, i64...) -> i64`
//! ([`ImportFn`]) and fail by writing a packed reason into [`Context::abort`].
//!
//! With the `host` feature, [`host`] runs compiled code in the current process (executable
//! memory from `cranelift-jit`, a signal handler for traps) with callables from any
//! [`graft_ir::Host`].
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "host")]
extern crate std;

mod compile;
pub mod context;
mod enter;
mod error;
pub mod isa;
mod lower;
pub mod trap;

#[cfg(feature = "host")]
pub mod host;

pub use compile::{compile, compile_with, Compiled, Options, FUNCTION_ALIGN};
#[cfg(feature = "bench-unchecked")]
pub use compile::Unchecked;
pub use context::{Context, ImportFn, RegionDesc, ENTRY_ARGS, MAX_REGIONS};
pub use enter::{abort_redirect, enter, enter_on_stack, recover, resume_address, CodeRegion, Redirect};
pub use error::{JitError, Unit};
pub use graft_ir::AbortReason;
pub use trap::{TrapReason, TrapSite, TrapTable};
