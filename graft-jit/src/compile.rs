//! The driver: lower and compile every function of a verified module, and lay the machine
//! code out as one relocation-free blob with its trap table.
//!
//! Layout: `fn0, fn1, ..., fnN-1`, each 16-byte aligned, the gaps filled with `int3`;
//! `fn0` is the entry, called directly by the trampoline in [`crate::enter`]. Functions call each other only through the context's function table and reach
//! imports only through its import table, so the blob runs at any address once copied.

use alloc::string::ToString;
use alloc::vec::Vec;

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::UserFuncName;
use cranelift_codegen::isa::TargetIsa;
use cranelift_frontend::FunctionBuilderContext;
use graft_ir::{AbortReason, FuncRef, Type, Verified};

use crate::context::{Context, ENTRY_ARGS, MAX_REGIONS};
use crate::error::{JitError, Unit};
use crate::lower::{self, Checks};
use crate::trap::{TrapReason, TrapSite, TrapTable};

/// Alignment of each function in the blob.
pub const FUNCTION_ALIGN: usize = 16;
/// The filler between functions: `int3`, so a stray jump into padding faults.
const PADDING: u8 = 0xcc;

/// How to compile. The default is what the kernel uses; only tests and benchmarks change it.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run Cranelift's IR verifier on every lowered function before compiling it (slower;
    /// catches lowering bugs as [`JitError::InvalidIr`] instead of bad code).
    pub verify_ir: bool,
    /// Benchmark-only: leave out the region checks and masks (`memory`) and/or the fuel
    /// checks (`fuel`) to measure their cost. The field does not exist unless the
    /// `bench-unchecked` feature is enabled, and nothing in a blob can set it.
    #[cfg(feature = "bench-unchecked")]
    pub unchecked: Unchecked,
}

/// Which checks a benchmark build leaves out.
#[cfg(feature = "bench-unchecked")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unchecked {
    /// Leave out region bounds checks and data-region masking.
    pub memory: bool,
    /// Leave out fuel checks.
    pub fuel: bool,
}

// Not derived: `verify_ir` follows the build profile.
#[allow(clippy::derivable_impls)]
impl Default for Options {
    fn default() -> Self {
        Options {
            verify_ir: cfg!(debug_assertions),
            #[cfg(feature = "bench-unchecked")]
            unchecked: Unchecked::default(),
        }
    }
}

impl Options {
    fn checks(&self) -> Checks {
        #[cfg(feature = "bench-unchecked")]
        {
            Checks { memory: !self.unchecked.memory, fuel: !self.unchecked.fuel }
        }
        #[cfg(not(feature = "bench-unchecked"))]
        {
            Checks::ALL
        }
    }
}

/// A compiled graft: position-independent machine code and what a caller needs to run it.
#[derive(Clone, Debug)]
pub struct Compiled {
    code: Vec<u8>,
    functions: Vec<u32>,
    entry: u32,
    traps: TrapTable,
    data_size: u32,
    regions: usize,
    entry_params: Vec<Type>,
    entry_ret: Option<Type>,
}

impl Compiled {
    /// The machine code: copy it anywhere executable, unchanged.
    pub fn code(&self) -> &[u8] {
        &self.code
    }

    /// Offset of each function `fnK` in [`Compiled::code`].
    pub fn function_offsets(&self) -> &[u32] {
        &self.functions
    }

    /// Offset of the entry function `fn0`, the address to pass to [`crate::enter`].
    pub fn entry_offset(&self) -> u32 {
        self.entry
    }

    /// The trap table.
    pub fn traps(&self) -> &TrapTable {
        &self.traps
    }

    /// The function table for code placed at `code_base`: what [`Context::functions`] must
    /// point to for as long as the code can run.
    pub fn function_table(&self, code_base: u64) -> Vec<u64> {
        self.functions.iter().map(|&o| code_base + u64::from(o)).collect()
    }

    /// The size of the data region the code was compiled for (its masks are constants).
    pub fn data_size(&self) -> u32 {
        self.data_size
    }

    /// How many passed-in regions (`r1..`) the graft point has.
    pub fn region_count(&self) -> usize {
        self.regions
    }

    /// The entry function's parameter types, in the order of the `args` array of
    /// [`crate::enter`].
    pub fn entry_params(&self) -> &[Type] {
        &self.entry_params
    }

    /// The entry function's result type.
    pub fn entry_ret(&self) -> Option<Type> {
        self.entry_ret
    }

    /// The code placed at `base`, for [`crate::recover`].
    pub fn at(&self, base: u64) -> crate::CodeRegion<'_> {
        crate::CodeRegion { base, len: self.code.len() as u64, traps: &self.traps }
    }

    /// Check the parts of a filled-in context that the code relies on: the data region has
    /// the compiled size, the tables are set, the abort slot is clear, and no call is in
    /// progress on it. A failure is the caller's bug, reported as `HostContract`.
    pub fn check_context(&self, ctx: &Context) -> Result<(), AbortReason> {
        let ok = ctx.data_size == u64::from(self.data_size)
            && ctx.data_base != 0
            && !ctx.functions.is_null()
            && ctx.abort == 0
            && ctx.recovery_rsp == 0;
        if ok { Ok(()) } else { Err(AbortReason::HostContract) }
    }
}

/// Compile a verified module with the default [`Options`].
pub fn compile(verified: &Verified) -> Result<Compiled, JitError> {
    compile_with(verified, &Options::default())
}

/// Compile a verified module.
pub fn compile_with(verified: &Verified, options: &Options) -> Result<Compiled, JitError> {
    let module = verified.module();
    let point = verified.point();
    if point.regions.len() > MAX_REGIONS {
        return Err(JitError::TooManyRegions { point: point.name, regions: point.regions.len() });
    }
    let entry_fn = module.function(graft_ir::Module::ENTRY);
    let entry_params = entry_fn.map_or(0, |f| f.sig.params.len());
    if entry_params > ENTRY_ARGS {
        return Err(JitError::TooManyEntryParams { params: entry_params });
    }
    let isa = crate::isa::build()?;
    let checks = options.checks();
    let mut fctx = FunctionBuilderContext::new();
    let mut cctx = cranelift_codegen::Context::new();
    let mut out = Blob::default();

    for (i, f) in module.functions.iter().enumerate() {
        let fref = FuncRef(i as u32);
        let unit = Unit::Function(fref);
        cctx.clear();
        cctx.func.name = UserFuncName::user(0, i as u32);
        cctx.func.signature = lower::function_signature(&f.sig);
        lower::lower_function(verified, fref, &mut cctx.func, &mut fctx, isa.frontend_config(), checks)?;
        let offset = out.emit(&mut cctx, &*isa, unit, options)?;
        out.functions.push(offset);
    }

    let entry = *out.functions.first().ok_or(JitError::Internal { unit: Unit::Function(FuncRef(0)), what: "no entry function" })?;
    Ok(Compiled {
        code: out.code,
        functions: out.functions,
        entry,
        traps: TrapTable::from_sites(out.traps),
        data_size: module.resources.data_size,
        regions: point.regions.len(),
        entry_params: entry_fn.map(|f| f.sig.params.clone()).unwrap_or_default(),
        entry_ret: entry_fn.and_then(|f| f.sig.ret),
    })
}

#[derive(Default)]
struct Blob {
    code: Vec<u8>,
    functions: Vec<u32>,
    traps: Vec<TrapSite>,
}

impl Blob {
    /// Compile the function in `cctx` and append it; its offset.
    fn emit(
        &mut self,
        cctx: &mut cranelift_codegen::Context,
        isa: &dyn TargetIsa,
        unit: Unit,
        options: &Options,
    ) -> Result<u32, JitError> {
        if options.verify_ir {
            cranelift_codegen::verify_function(&cctx.func, isa.flags())
                .map_err(|e| JitError::InvalidIr { unit, message: e.to_string() })?;
        }
        let compiled = cctx
            .compile(isa, &mut ControlPlane::default())
            .map_err(|e| JitError::Codegen { unit, error: e.inner })?;
        let relocs = compiled.buffer.relocs().len();
        if relocs != 0 {
            return Err(JitError::Relocations { unit, count: relocs });
        }
        let pad = self.code.len().next_multiple_of(FUNCTION_ALIGN) - self.code.len();
        self.code.extend(core::iter::repeat_n(PADDING, pad));
        let start = self.code.len();
        let bytes = compiled.code_buffer();
        let end = start + bytes.len();
        let offset = u32::try_from(start).ok().filter(|_| u32::try_from(end).is_ok());
        let offset = offset.ok_or(JitError::CodeTooLarge { bytes: end })?;
        for t in compiled.buffer.traps() {
            let reason =
                TrapReason::from_trap_code(t.code).ok_or(JitError::UnknownTrap { unit, code: t.code.as_raw().get() })?;
            self.traps.push(TrapSite { offset: offset + t.offset, reason });
        }
        self.code.extend_from_slice(bytes);
        Ok(offset)
    }
}
