//! The one target the JIT compiles for: x86-64, System V calling convention, from a fixed,
//! conservative flag set.
//!
//! The kernel and the host build the target from the same list below, never by probing the
//! CPU, so the machine code for a module is the same wherever it is compiled and runs on any
//! x86-64 (the graft IR has no floating point; the code uses general-purpose registers only).

use alloc::string::ToString;

use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use target_lexicon::{Architecture, BinaryFormat, Environment, OperatingSystem, Triple, Vendor};

use crate::error::JitError;

/// Shared Cranelift settings, in the order they are applied.
pub const SHARED_FLAGS: &[(&str, &str)] = &[
    ("opt_level", "speed"),
    // The JIT runs its own checks (`Options::verify_ir`); the codegen verifier only costs time.
    ("enable_verifier", "false"),
    // Frames are found by walking frame pointers in kernel backtraces of a faulting graft.
    ("preserve_frame_pointers", "true"),
    // The prologue's stack-limit check bounds every frame; probes would need a libcall.
    ("enable_probestack", "false"),
    // No unwinder runs over graft frames: faults are recovered through the trampoline.
    ("unwind_info", "false"),
    ("is_pic", "false"),
    ("use_colocated_libcalls", "false"),
    ("enable_alias_analysis", "true"),
];

/// x86-64 features: none beyond the SSE2 baseline, so the code runs on every x86-64 CPU
/// and in a kernel that saves no extended state.
pub const X86_FLAGS: &[(&str, &str)] = &[
    ("has_sse3", "false"),
    ("has_ssse3", "false"),
    ("has_sse41", "false"),
    ("has_sse42", "false"),
    ("has_popcnt", "false"),
    ("has_avx", "false"),
    ("has_avx2", "false"),
    ("has_fma", "false"),
    ("has_bmi1", "false"),
    ("has_bmi2", "false"),
    ("has_lzcnt", "false"),
    ("has_avx512f", "false"),
];

/// The target triple: bare-metal x86-64 ELF, so the default calling convention is System V
/// on every host.
pub fn triple() -> Triple {
    Triple {
        architecture: Architecture::X86_64,
        vendor: Vendor::Unknown,
        operating_system: OperatingSystem::None_,
        environment: Environment::Unknown,
        binary_format: BinaryFormat::Elf,
    }
}

/// Build the target ISA from [`SHARED_FLAGS`] and [`X86_FLAGS`].
pub fn build() -> Result<OwnedTargetIsa, JitError> {
    let mut shared = settings::builder();
    for (name, value) in SHARED_FLAGS {
        shared
            .set(name, value)
            .map_err(|e| JitError::Isa { setting: name, message: e.to_string() })?;
    }
    let mut x86 = isa::lookup(triple()).map_err(|e| JitError::Isa { setting: "triple", message: e.to_string() })?;
    for (name, value) in X86_FLAGS {
        x86.set(name, value).map_err(|e| JitError::Isa { setting: name, message: e.to_string() })?;
    }
    x86.finish(settings::Flags::new(shared))
        .map_err(|e| JitError::Isa { setting: "finish", message: e.to_string() })
}
