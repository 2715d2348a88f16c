//! Why compiling a verified module failed.
//!
//! A verified module should always compile; each variant names what went wrong and where so
//! that a failure is a clear bug report, never a panic in the kernel.

use alloc::string::String;
use core::fmt;

use cranelift_codegen::CodegenError;
use graft_ir::FuncRef;

/// Where in the output a problem arose: a graft function.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unit {
    /// The graft function `fnN`.
    Function(FuncRef),
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Function(func) => write!(f, "{func}"),
        }
    }
}

/// A compilation failure.
#[derive(Debug)]
pub enum JitError {
    /// The fixed target could not be built (a Cranelift version without one of the flags).
    Isa {
        /// The setting that was refused (or `triple`/`finish`).
        setting: &'static str,
        /// Cranelift's message.
        message: String,
    },
    /// The lowered function failed Cranelift's IR verifier (`Options::verify_ir`).
    InvalidIr {
        /// Where.
        unit: Unit,
        /// The verifier's report.
        message: String,
    },
    /// Cranelift failed to compile a lowered function.
    Codegen {
        /// Where.
        unit: Unit,
        /// Cranelift's error.
        error: CodegenError,
    },
    /// Compiled code asked for relocations, which the blob format cannot carry.
    Relocations {
        /// Where.
        unit: Unit,
        /// How many.
        count: usize,
    },
    /// Compiled code contains a trap whose code the trap table cannot map.
    UnknownTrap {
        /// Where.
        unit: Unit,
        /// The raw trap code.
        code: u8,
    },
    /// The graft point passes in more regions than the context has descriptors for.
    TooManyRegions {
        /// The graft point.
        point: &'static str,
        /// How many regions it passes.
        regions: usize,
    },
    /// The entry function takes more parameters than the trampoline passes in registers.
    TooManyEntryParams {
        /// How many it takes.
        params: usize,
    },
    /// The code blob outgrew 32-bit offsets.
    CodeTooLarge {
        /// Bytes so far.
        bytes: usize,
    },
    /// The module broke an invariant the verifier guarantees (a bug in one of the two).
    Internal {
        /// Where.
        unit: Unit,
        /// What was wrong.
        what: &'static str,
    },
}

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitError::Isa { setting, message } => write!(f, "cannot build the x86-64 target ({setting}): {message}"),
            JitError::InvalidIr { unit, message } => write!(f, "lowering of {unit} is invalid Cranelift IR:\n{message}"),
            JitError::Codegen { unit, error } => write!(f, "Cranelift failed to compile {unit}: {error}"),
            JitError::Relocations { unit, count } => {
                write!(f, "{unit} compiled with {count} relocation(s); graft code must have none")
            }
            JitError::UnknownTrap { unit, code } => write!(f, "{unit} contains a trap with unmapped code {code}"),
            JitError::TooManyRegions { point, regions } => write!(
                f,
                "graft point `{point}` passes {regions} regions; the context has room for {}",
                crate::context::MAX_REGIONS
            ),
            JitError::TooManyEntryParams { params } => write!(
                f,
                "the entry function takes {params} parameters; a call passes at most {}",
                crate::context::ENTRY_ARGS
            ),
            JitError::CodeTooLarge { bytes } => write!(f, "code blob of {bytes} bytes exceeds 4 GiB"),
            JitError::Internal { unit, what } => write!(f, "internal error in {unit}: {what}"),
        }
    }
}

impl core::error::Error for JitError {}
