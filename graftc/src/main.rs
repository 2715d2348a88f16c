//! The `graftc` command: build, check, dump, points, run.
//!
//! Exit status: 0 on success, 1 on errors in the input (or a graft that aborts under `run`),
//! 2 on usage errors (clap's own code for bad command lines), 3 on an internal compiler error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use graftc::diag::{emit_stderr, Diagnostic};
use graftc::{compile, CompileError, Options};

#[derive(Parser)]
#[command(name = "graftc", version, about = "Compile grafts (kernel policy replacements) to verified graft IR blobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a graft source file and write the IR blob.
    Build {
        /// The source file (`.graft`).
        file: PathBuf,
        /// Where to write the blob (default: FILE with extension `.grir`).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Emit imports the ABI forbids (as warnings) and let the verifier reject them, as the
        /// kernel's loader would. For testing the loader.
        #[arg(long)]
        defer_import_rules: bool,
    },
    /// Parse, type-check and verify a graft source file; write nothing.
    Check {
        /// The source file.
        file: PathBuf,
        /// As for `build`.
        #[arg(long)]
        defer_import_rules: bool,
    },
    /// Print the IR, in text form, of a source file or a blob.
    Dump {
        /// A source file or a blob (recognised by its `GRIR` magic).
        file: PathBuf,
    },
    /// List the graft points and kernel callables of the graft ABI.
    Points,
    /// Run a graft on the host against a model of its graft point.
    Run {
        /// A source file or a blob.
        file: PathBuf,
        /// An entry argument, in the point's parameter order: an integer (42, -1, 0x2a) or a
        /// handle (file:3). Repeat for each parameter.
        #[arg(long = "arg", allow_hyphen_values = true)]
        args: Vec<String>,
        /// Buffer contents: NAME=HEX, NAME=zero:LEN, NAME=str:TEXT, or records by field name, NAME=records:F=V,F=V/F=V (NAME or rK; fields per `graftc points`).
        #[arg(long = "buf")]
        bufs: Vec<String>,
        /// Buffer contents from a file: NAME=PATH.
        #[arg(long = "buf-file")]
        buf_files: Vec<String>,
        /// Fuel per call (default: the graft's request).
        #[arg(long)]
        fuel: Option<u64>,
        /// Call the graft this many times (its data region persists between calls).
        #[arg(long, default_value_t = 1)]
        calls: u32,
        /// Use graft-ir's reference interpreter instead of the JIT (graft-jit's host runner).
        #[arg(long)]
        interp: bool,
    },
}

const EXIT_INPUT: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERNAL: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Build { file, output, defer_import_rules } => {
            let module = if defer_import_rules {
                match load_rejected(&file) {
                    Some(m) => m,
                    None => return fail(),
                }
            } else {
                let Some((_, verified)) = load_source(&file, Options { defer_import_rules }) else { return fail() };
                verified.into_module()
            };
            let blob = match graft_ir::encode(&module) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: cannot encode the module: {e}");
                    return ExitCode::from(EXIT_INPUT);
                }
            };
            let out = output.unwrap_or_else(|| file.with_extension("grir"));
            if let Err(e) = std::fs::write(&out, blob) {
                eprintln!("error: cannot write {}: {e}", out.display());
                return ExitCode::from(EXIT_INPUT);
            }
            eprintln!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Command::Check { file, defer_import_rules } => match load_source(&file, Options { defer_import_rules }) {
            Some(_) => {
                eprintln!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            None => fail(),
        },
        Command::Dump { file } => {
            // A blob is printed even when it does not verify: that is when one wants to see it.
            if let Some(bytes) = read_file(&file).filter(|b| b.starts_with(&graft_ir::binary::MAGIC)) {
                let module = match graft_ir::decode(&bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("error: {}: {e}", file.display());
                        return ExitCode::from(EXIT_INPUT);
                    }
                };
                print!("{module}");
                return match graft_ir::verify(module) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(log) => {
                        eprintln!("error: {} does not verify:\n{log}", file.display());
                        ExitCode::from(EXIT_INPUT)
                    }
                };
            }
            let Some(verified) = load_any(&file) else { return fail() };
            print!("{}", verified.module());
            ExitCode::SUCCESS
        }
        Command::Points => {
            print!("{}", points_text());
            ExitCode::SUCCESS
        }
        Command::Run { file, args, bufs, buf_files, fuel, calls, interp } => {
            let mut buffers = Vec::new();
            for b in &bufs {
                let Some((name, text)) = b.split_once('=') else {
                    eprintln!("error: --buf wants NAME=CONTENTS, got `{b}`");
                    return ExitCode::from(EXIT_USAGE);
                };
                match graftc::run::parse_buffer(text) {
                    Ok(bytes) => buffers.push((name.to_string(), bytes)),
                    Err(why) => {
                        eprintln!("error: --buf {name}: {why}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                }
            }
            for b in &buf_files {
                let Some((name, path)) = b.split_once('=') else {
                    eprintln!("error: --buf-file wants NAME=PATH, got `{b}`");
                    return ExitCode::from(EXIT_USAGE);
                };
                match std::fs::read(path) {
                    Ok(bytes) => buffers.push((name.to_string(), bytes.into())),
                    Err(e) => {
                        eprintln!("error: cannot read {path}: {e}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                }
            }
            let Some(verified) = load_any(&file) else { return fail() };
            let engine = if interp { graftc::run::Engine::Interp } else { graftc::run::Engine::Jit };
            let config = graftc::run::RunConfig { engine, args, buffers, fuel, calls };
            match graftc::run::run(&verified, &config) {
                Ok(report) => {
                    print!("{}", graftc::run::format_report(&report));
                    if report.outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INPUT) }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
    }
}

thread_local! {
    static INTERNAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn fail() -> ExitCode {
    if INTERNAL.with(|c| c.get()) { ExitCode::from(EXIT_INTERNAL) } else { ExitCode::from(EXIT_INPUT) }
}

fn read_file(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            None
        }
    }
}

/// Compile a source file, printing diagnostics; the verified module on success.
fn load_source(path: &Path, options: Options) -> Option<(String, graft_ir::Verified)> {
    let bytes = read_file(path)?;
    let Ok(src) = String::from_utf8(bytes) else {
        eprintln!("error: {} is not UTF-8 text", path.display());
        return None;
    };
    let name = path.display().to_string();
    match compile(&src, options) {
        Ok(c) => {
            emit_stderr(&name, &src, &c.warnings);
            Some((src, c.verified))
        }
        Err(CompileError::Source(diags)) => {
            emit_stderr(&name, &src, &diags);
            let n = diags.iter().filter(|d| d.severity == graftc::diag::Severity::Error).count();
            eprintln!("error: could not compile {name}: {n} error{}", if n == 1 { "" } else { "s" });
            None
        }
        Err(CompileError::Rejected { diagnostics, log, .. }) => {
            emit_stderr(&name, &src, &diagnostics);
            eprintln!("error: the verifier rejects {name}, as the kernel would at load time:\n{log}");
            None
        }
        Err(e @ CompileError::Internal { .. }) => {
            INTERNAL.with(|c| c.set(true));
            emit_stderr(&name, &src, &[] as &[Diagnostic]);
            eprintln!("{e}");
            if let CompileError::Internal { ir, .. } = e {
                eprintln!("the IR produced was:\n{ir}");
            }
            eprintln!("this is a bug in graftc; please report it with the source file");
            None
        }
    }
}

/// For `build --defer-import-rules`: the module, verified or rejected only for its imports
/// (then written anyway, with the verifier's log as a warning, for testing the kernel's loader).
fn load_rejected(path: &Path) -> Option<graft_ir::Module> {
    let bytes = read_file(path)?;
    let Ok(src) = String::from_utf8(bytes) else {
        eprintln!("error: {} is not UTF-8 text", path.display());
        return None;
    };
    let name = path.display().to_string();
    match compile(&src, Options { defer_import_rules: true }) {
        Ok(c) => {
            emit_stderr(&name, &src, &c.warnings);
            Some(c.verified.into_module())
        }
        Err(CompileError::Rejected { diagnostics, log, module }) => {
            emit_stderr(&name, &src, &diagnostics);
            eprintln!("warning: the verifier rejects {name}, as the kernel will at load time; written anyway:\n{log}");
            Some(*module)
        }
        Err(_) => load_source(path, Options { defer_import_rules: true }).map(|(_, v)| v.into_module()),
    }
}

/// A blob (by magic) or a source file, verified.
fn load_any(path: &Path) -> Option<graft_ir::Verified> {
    let bytes = read_file(path)?;
    if bytes.starts_with(&graft_ir::binary::MAGIC) {
        let module = match graft_ir::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return None;
            }
        };
        return match graft_ir::verify(module) {
            Ok(v) => Some(v),
            Err(log) => {
                eprintln!("error: {} does not verify:\n{log}", path.display());
                None
            }
        };
    }
    load_source(path, Options::default()).map(|(_, v)| v)
}

fn points_text() -> String {
    use graft_ir::abi::{CALLABLES, GRAFT_POINTS};
    let mut out = String::new();
    out.push_str("GRAFT POINTS\n");
    for p in GRAFT_POINTS {
        out.push_str(&format!("\n{}\n    {}\n", graftc::check::point_signature(p), p.doc));
        for (i, r) in p.regions.iter().enumerate() {
            let rights = if r.rights.writable() { "read-write" } else { "read-only" };
            out.push_str(&format!("    buffer {} (r{}, {rights}): {}\n", r.name, i + 1, r.doc));
            for f in r.fields {
                out.push_str(&format!("        {}: {} @{}  {}\n", f.name, f.ty.name(), f.offset, f.doc));
            }
        }
        out.push_str(&format!("    result: {}; {}\n", p.result, p.validator.describe(p)));
        out.push_str(&format!("    may call: {}\n", p.callables.join(", ")));
    }
    out.push_str("\nKERNEL CALLABLES\n\n");
    for c in CALLABLES {
        let params: Vec<String> = c.params.iter().map(|t| graftc::check::Ty::from_ir(*t).to_string()).collect();
        let ret = c.ret.map(|t| format!(" -> {}", graftc::check::Ty::from_ir(t))).unwrap_or_default();
        let tag = if c.importable { String::new() } else { "  [kernel-only]".into() };
        out.push_str(&format!("{}({}){ret}  cost {}{tag}\n    {}\n", c.name, params.join(", "), c.cost, c.doc));
    }
    out
}
