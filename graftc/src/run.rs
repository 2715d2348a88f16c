//! Running a graft on the host against a small model of its graft point.
//!
//! Two engines run the graft: graft-jit's host runner (the machine code the kernel would
//! run, with its sandbox checks) and graft-ir's reference interpreter. They share one
//! contract, so the model around them is the same.
//!
//! The model supplies what the kernel would: the entry arguments, the point's buffers, the
//! data region (initialised from the data section and kept across calls), fuel, callables
//! (graft-ir's deterministic [`MockHost`]) and the point's result validator. On an abort it
//! does what the kernel's transaction would: the data region and buffers are put back, the
//! locks and allocations of the call are released.

use graft_ir::abi::GraftPoint;
use graft_ir::interp::{initial_data, DataValue};
use graft_ir::mock::MockHost;
use graft_ir::{AbortReason, HandleKind, Type, Verified};

/// Why a run could not start (a usage error, not a graft fault).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RunSetupError {
    /// Wrong number of `--arg` values.
    ArgCount {
        /// The point's value parameters.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// An argument that does not parse as the parameter's type.
    BadArg {
        /// The parameter.
        param: &'static str,
        /// Its type.
        ty: Type,
        /// What was given.
        text: String,
    },
    /// A buffer name that is not one of the point's.
    UnknownBuffer {
        /// The name given.
        name: String,
        /// The point's buffers.
        known: Vec<&'static str>,
    },
    /// The JIT could not compile or place the graft.
    Jit(String),
    /// Buffer contents that do not parse.
    BadBuffer {
        /// The buffer.
        name: String,
        /// Why.
        why: String,
    },
}

impl std::fmt::Display for RunSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunSetupError::ArgCount { expected, found } => {
                write!(f, "the graft point takes {expected} argument(s), {found} given with --arg")
            }
            RunSetupError::BadArg { param, ty, text } => {
                write!(f, "argument `{text}` for `{param}` is not a {ty} (integers: 42, -1, 0x2a; handles: file:3)")
            }
            RunSetupError::UnknownBuffer { name, known } => {
                write!(f, "no buffer `{name}` at this graft point (it has: {})", known.join(", "))
            }
            RunSetupError::BadBuffer { name, why } => write!(f, "buffer `{name}`: {why}"),
            RunSetupError::Jit(e) => write!(f, "the JIT cannot run this graft: {e} (try --interp)"),
        }
    }
}

impl std::error::Error for RunSetupError {}

/// Which engine executes the graft.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Engine {
    /// graft-jit's host runner: Cranelift machine code, as in the kernel.
    #[default]
    Jit,
    /// graft-ir's reference interpreter.
    Interp,
}

/// What one run does.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// The engine.
    pub engine: Engine,
    /// Entry arguments as text, in the point's parameter order.
    pub args: Vec<String>,
    /// Buffer contents by name (or `rK`); missing buffers are empty.
    pub buffers: Vec<(String, Vec<u8>)>,
    /// Fuel per call; the module's request if `None`.
    pub fuel: Option<u64>,
    /// How many times to call the graft (the data region persists across calls).
    pub calls: u32,
}

/// What a run gave.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The last call's result or abort.
    pub outcome: Result<DataValue, AbortReason>,
    /// Fuel used by the last call.
    pub fuel_used: u64,
    /// Fuel each call had.
    pub fuel: u64,
    /// Writable buffers after the last call, by name.
    pub buffers: Vec<(&'static str, Vec<u8>)>,
    /// Values passed to `debug.trace`.
    pub trace: Vec<i64>,
    /// Locks still held when the call ended (released by commit or abort).
    pub locks_released: usize,
    /// Allocations undone by an abort.
    pub allocations_freed: usize,
}

/// Parse an argument: an integer of the parameter's width, or a handle `kind:N`.
pub fn parse_value(text: &str, ty: Type) -> Option<DataValue> {
    if let Type::Handle(kind) = ty {
        let (k, n) = text.split_once(':')?;
        let k = k.strip_prefix("handle<").and_then(|k| k.strip_suffix('>')).unwrap_or(k);
        if HandleKind::from_name(k)? != kind {
            return None;
        }
        return Some(DataValue::Handle(kind, parse_int(n)? as u64));
    }
    let v = parse_int(text)?;
    let bits = ty.bits();
    let (min, umax) = (-(1i128 << (bits - 1)), (1i128 << bits) - 1);
    (min..=umax).contains(&v).then(|| DataValue::from_bits(ty, v as u64))
}

fn parse_int(text: &str) -> Option<i128> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let t = t.replace('_', "");
    let v = if let Some(h) = t.strip_prefix("0x") { i128::from_str_radix(h, 16).ok()? } else { t.parse::<i128>().ok()? };
    Some(if neg { -v } else { v })
}

/// Parse buffer contents: hex bytes (`0a1b...`, spaces allowed), `zero:N`, or `str:TEXT`.
pub fn parse_buffer(text: &str) -> Result<Vec<u8>, String> {
    if let Some(n) = text.strip_prefix("zero:") {
        let n: usize = n.parse().map_err(|_| format!("`{n}` is not a byte count"))?;
        if n > 1 << 24 {
            return Err("at most 16 MiB".into());
        }
        return Ok(vec![0; n]);
    }
    if let Some(s) = text.strip_prefix("str:") {
        return Ok(s.as_bytes().to_vec());
    }
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'_').collect();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|c| {
            let s = std::str::from_utf8(c).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("`{s}` is not a hex byte"))
        })
        .collect()
}

/// The point's validator, as the kernel applies it (the text of `GraftPoint::result`).
pub fn validate(point: &GraftPoint, args: &[DataValue], regions: &[Vec<u8>], result: DataValue, host: &MockHost) -> bool {
    // The mock host's file geometry: size = raw handle * 4096, 1024-byte blocks.
    let _ = host;
    let file_blocks = match args.first() {
        Some(DataValue::Handle(_, raw)) => (*raw as i64).saturating_mul(4096) / 1024,
        _ => 0,
    };
    let facts = graft_ir::abi::ResultFacts {
        candidates: args.first().map_or(0, |a| a.as_i64()),
        out: regions.get(1).map_or(&[][..], Vec::as_slice),
        file_blocks,
    };
    point.accepts(result.as_i64(), &facts)
}

/// Run a verified graft per `config`.
pub fn run(verified: &Verified, config: &RunConfig) -> Result<RunReport, RunSetupError> {
    let point = verified.point();
    if config.args.len() != point.params.len() {
        return Err(RunSetupError::ArgCount { expected: point.params.len(), found: config.args.len() });
    }
    let mut args = Vec::new();
    for (p, text) in point.params.iter().zip(&config.args) {
        let v = parse_value(text, p.ty).ok_or_else(|| RunSetupError::BadArg { param: p.name, ty: p.ty, text: text.clone() })?;
        args.push(v);
    }
    let mut regions: Vec<Vec<u8>> = vec![initial_data(verified.module())];
    regions.extend(point.regions.iter().map(|_| Vec::new()));
    for (name, bytes) in &config.buffers {
        let idx = point
            .regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| i + 1)
            .or_else(|| name.strip_prefix('r').and_then(|k| k.parse::<usize>().ok()).filter(|&k| k >= 1 && k <= point.regions.len()));
        let Some(idx) = idx else {
            return Err(RunSetupError::UnknownBuffer { name: name.clone(), known: point.regions.iter().map(|r| r.name).collect() });
        };
        regions[idx] = bytes.clone();
    }
    let fuel = config.fuel.unwrap_or(verified.module().resources.fuel);
    let jit = match config.engine {
        Engine::Jit => Some(graft_jit::host::Loaded::compile(verified).map_err(|e| RunSetupError::Jit(e.to_string()))?),
        Engine::Interp => None,
    };
    let mut host = MockHost::default();
    let mut report = RunReport { outcome: Err(AbortReason::HostContract), fuel_used: 0, fuel, buffers: Vec::new(), trace: Vec::new(), locks_released: 0, allocations_freed: 0 };
    for _ in 0..config.calls.max(1) {
        let saved = regions.clone();
        let allocs_before = host.allocations.len();
        let mut left = fuel;
        let outcome = {
            let mut slices: Vec<&mut [u8]> = regions.iter_mut().map(Vec::as_mut_slice).collect();
            match &jit {
                Some(loaded) => loaded.call(&args, &mut slices, &mut left, &mut host),
                None => graft_ir::interp::run(verified, graft_ir::Module::ENTRY, &args, &mut slices, &mut left, &mut host),
            }
        };
        let outcome = match outcome {
            Ok(Some(v)) if validate(point, &args, &regions, v, &host) => Ok(v),
            Ok(Some(_)) => Err(AbortReason::InvalidResult),
            Ok(None) => Err(AbortReason::HostContract),
            Err(e) => Err(e),
        };
        // Two-phase locking: every lock is released at commit or abort.
        report.locks_released = host.held.len();
        host.held.clear();
        if outcome.is_err() {
            regions = saved;
            report.allocations_freed = host.allocations.len().saturating_sub(allocs_before);
            host.allocations.truncate(allocs_before);
        }
        report.fuel_used = fuel - left;
        report.outcome = outcome;
    }
    report.buffers = point
        .regions
        .iter()
        .enumerate()
        .filter(|(_, r)| r.rights.writable())
        .map(|(i, r)| (r.name, regions[i + 1].clone()))
        .collect();
    report.trace = host.trace.clone();
    Ok(report)
}

/// The report as the CLI prints it.
pub fn format_report(r: &RunReport) -> String {
    let mut out = String::new();
    match &r.outcome {
        Ok(v) => out.push_str(&format!("result: {v}\n")),
        Err(e) => out.push_str(&format!("aborted: {} ({e})\n", e.name())),
    }
    out.push_str(&format!("fuel used: {} of {}\n", r.fuel_used, r.fuel));
    if r.outcome.is_ok() {
        for (name, bytes) in &r.buffers {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            out.push_str(&format!("buffer {name}: {hex}\n"));
        }
    } else {
        out.push_str("rolled back: data region and buffers restored\n");
        if r.allocations_freed > 0 {
            out.push_str(&format!("rolled back: {} allocation(s) freed\n", r.allocations_freed));
        }
    }
    if r.locks_released > 0 {
        out.push_str(&format!("locks released at {}: {}\n", if r.outcome.is_ok() { "commit" } else { "abort" }, r.locks_released));
    }
    if !r.trace.is_empty() {
        let t: Vec<String> = r.trace.iter().map(i64::to_string).collect();
        out.push_str(&format!("trace: {}\n", t.join(", ")));
    }
    out
}

/// A run configuration from `graftc run`-style words (`--arg 3 --buf cands=00ff --calls 2`),
/// as written on the `// run:` line of a sample.
pub fn config_from_words(words: &[&str]) -> Result<RunConfig, String> {
    let mut c = RunConfig { calls: 1, ..RunConfig::default() };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let mut value = || it.next().copied().ok_or_else(|| format!("`{w}` needs a value"));
        match *w {
            "--arg" => c.args.push(value()?.to_string()),
            "--buf" => {
                let v = value()?;
                let (name, text) = v.split_once('=').ok_or_else(|| format!("--buf wants NAME=CONTENTS, got `{v}`"))?;
                c.buffers.push((name.to_string(), parse_buffer(text)?));
            }
            "--calls" => c.calls = value()?.parse().map_err(|_| "--calls wants a count".to_string())?,
            "--fuel" => c.fuel = Some(value()?.parse().map_err(|_| "--fuel wants a number".to_string())?),
            "--interp" => c.engine = Engine::Interp,
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(c)
}
