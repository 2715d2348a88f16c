//! graftc: the graft language compiler.
//!
//! It turns a graft source file (the language of `docs/graft-language.md`) into a verified
//! graft IR module: [`syntax`] lexes and parses, [`check`] resolves names and types against
//! the graft ABI table, [`lower`] builds SSA IR with graft-ir's builder, and graft-ir's
//! verifier has the last word. Every verifier rejection of compiler output is a compiler bug
//! and is reported as one. [`run`] executes a graft on the host against a model of its graft
//! point. It does not load grafts into a kernel.
//!
//! ```ignore
//! let compiled = graftc::compile(&source, graftc::Options::default())?;
//! let blob = graft_ir::encode(compiled.verified.module())?;
//! ```
#![forbid(unsafe_code)]

pub mod check;
pub mod diag;
pub mod lower;
pub mod run;
pub mod syntax;

use graft_ir::{Verified, VerifyErrors};

use diag::{Diagnostic, Diagnostics};

/// Compiler options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Emit imports that the ABI forbids at this graft point (with a warning), so that the
    /// verifier, as the kernel's loader would, rejects the module. For testing the loader.
    pub defer_import_rules: bool,
}

/// A successful compilation.
#[derive(Debug)]
pub struct Compiled {
    /// The verified module.
    pub verified: Verified,
    /// Warnings found on the way.
    pub warnings: Vec<Diagnostic>,
}

/// Why a compilation failed.
#[derive(Debug)]
pub enum CompileError {
    /// The source has errors (and maybe warnings), in the order found.
    Source(Vec<Diagnostic>),
    /// The verifier rejected a module built with [`Options::defer_import_rules`]: what the
    /// kernel's loader would say about it.
    Rejected {
        /// The front end's diagnostics (warnings about the deferred rules).
        diagnostics: Vec<Diagnostic>,
        /// The verifier's log.
        log: VerifyErrors,
        /// The module as compiled, unverified: what `build --defer-import-rules` writes so the
        /// kernel's loader can be shown rejecting it.
        module: Box<graft_ir::Module>,
    },
    /// A compiler bug: lowering failed or the verifier rejected the compiler's output.
    Internal {
        /// What went wrong.
        detail: String,
        /// The verifier's log, if it was the verifier that objected.
        log: Option<VerifyErrors>,
        /// The IR that was produced, in text form.
        ir: String,
    },
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Source(d) => {
                let n = d.iter().filter(|d| d.severity == diag::Severity::Error).count();
                write!(f, "{n} error(s) in the source")
            }
            CompileError::Rejected { log, .. } => write!(f, "rejected by the verifier:\n{log}"),
            CompileError::Internal { detail, log, .. } => {
                write!(f, "internal compiler error: {detail}")?;
                if let Some(log) = log {
                    write!(f, "\n{log}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CompileError {}

/// Parse and check only: every diagnostic, and the checked program if there were no errors.
pub fn front_end(source: &str, options: Options) -> (Option<check::Program>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let items = syntax::parse(source, &mut diags);
    let program = check::check(&items, &mut diags, check::CheckOptions { defer_import_rules: options.defer_import_rules });
    // Lexing runs ahead of parsing, and whole-function checks come last: present everything
    // in source order.
    diags.list.sort_by_key(|d| d.primary.0.start);
    (program.filter(|_| !diags.has_errors()), diags)
}

/// Compile a source file to a verified module.
pub fn compile(source: &str, options: Options) -> Result<Compiled, CompileError> {
    let (program, diags) = front_end(source, options);
    let Some(program) = program else {
        return Err(CompileError::Source(diags.list));
    };
    let (module, internal) = lower::lower(&program);
    let ir = module.to_string();
    let unverified = options.defer_import_rules.then(|| module.clone());
    if !internal.is_empty() {
        return Err(CompileError::Internal { detail: internal.join("; "), log: None, ir });
    }
    match graft_ir::verify(module) {
        // The blob's size is the one load limit the verifier cannot see: check it as the
        // kernel's loader would (`graft_ir::limits::MAX_BLOB_SIZE`).
        Ok(verified) => match graft_ir::encode(verified.module()) {
            Err(graft_ir::EncodeError::TooLarge { len }) => {
                let mut list = diags.list;
                list.push(
                    Diagnostic::error(
                        diag::Span::new(0, 0),
                        format!(
                            "the graft is too large for the kernel: its blob would be {len} bytes, more than the limit of {} bytes",
                            graft_ir::limits::MAX_BLOB_SIZE
                        ),
                    )
                    .note("graft-ir's limits bound the kernel's work per graft (graft_ir::limits)"),
                );
                Err(CompileError::Source(list))
            }
            _ => Ok(Compiled { verified, warnings: diags.list }),
        },
        Err(log) if options.defer_import_rules && log.errors.iter().all(|e| e.rule == graft_ir::verifier::Rule::Imports) => {
            let module = Box::new(unverified.unwrap_or_default());
            Err(CompileError::Rejected { diagnostics: diags.list, log, module })
        }
        // Size limits are the only verifier rules the front end does not check ahead: a graft
        // too large for the kernel is an error in the input, not in the compiler.
        Err(log) if log.errors.iter().all(|e| e.rule == graft_ir::verifier::Rule::SizeLimits) => {
            let mut list = diags.list;
            for e in &log.errors {
                list.push(
                    Diagnostic::error(diag::Span::new(0, 0), format!("the graft is too large for the kernel: {}", e.message))
                        .note("graft-ir's limits bound the kernel's work per graft (graft_ir::limits)"),
                );
            }
            Err(CompileError::Source(list))
        }
        Err(log) => Err(CompileError::Internal {
            detail: "the verifier rejected the compiler's output".into(),
            log: Some(log),
            ir,
        }),
    }
}
