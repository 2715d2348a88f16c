//! Running a graft on the host against a small model of its graft point.
//!
//! Two engines run the graft: graft-jit's host runner (the machine code the kernel would
//! run, with its sandbox checks) and graft-ir's reference interpreter. They share one
//! contract, so the model around them is the same.
//!
//! The model is derived from the point's row in the ABI table: the entry arguments are the
//! row's parameters, the buffers are its regions (given as bytes, or record by record with
//! the row's field names: `--buf threads=records:tid=7,runtime=1000/tid=8`), an extent
//! parameter must agree with its buffer (the kernel always passes `n` = the number of records),
//! and the result is checked by the row's [`Validator`] with the facts it names (the count
//! parameter, or the output region and the file's size in blocks, asked of the callables
//! `fs.file_size` and `fs.block_size`). The data region is initialised from the data section
//! and kept across calls; callables are graft-ir's deterministic [`MockHost`].
//!
//! On an abort it does what the kernel does: the transaction's effects are undone (counters,
//! allocations, locks) and the buffers are put back as the kernel passed them, but the graft's
//! **data region is kept as the graft left it** (it is the graft's private memory, not kernel
//! state, and the kernel does not log it).

use graft_ir::abi::{self, Extent, GraftPoint, RegionSpec, ResultFacts, Validator};
use graft_ir::interp::{initial_data, DataValue, Host};
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
    /// A record field the buffer's row does not have.
    UnknownField {
        /// The buffer.
        buffer: &'static str,
        /// The name given.
        field: String,
        /// The row's fields.
        known: Vec<&'static str>,
    },
    /// An extent parameter that disagrees with its buffer (the kernel never passes that).
    Extent {
        /// The parameter.
        param: &'static str,
        /// Its value.
        value: i64,
        /// The buffer.
        buffer: &'static str,
        /// Records (or bytes) in the buffer.
        count: usize,
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
            RunSetupError::UnknownField { buffer, field, known } => {
                write!(f, "buffer `{buffer}` has no field `{field}` (its records have: {})", known.join(", "))
            }
            RunSetupError::Extent { param, value, buffer, count } => write!(
                f,
                "`{param}` is {value} but buffer `{buffer}` holds {count}; the kernel always passes {param} = the buffer's count"
            ),
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
    pub buffers: Vec<(String, BufferInit)>,
    /// Fuel per call; the module's request if `None`.
    pub fuel: Option<u64>,
    /// How many times to call the graft (the data region persists across calls).
    pub calls: u32,
}

/// A buffer's initial contents, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BufferInit {
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Records, each a list of `field=value` pairs (fields not named are 0), laid out per the
    /// point's row.
    Records(Vec<Vec<(String, i128)>>),
}

impl From<Vec<u8>> for BufferInit {
    fn from(bytes: Vec<u8>) -> Self {
        BufferInit::Bytes(bytes)
    }
}

impl BufferInit {
    /// The bytes the kernel would pass, per `spec`'s layout.
    pub fn bytes(&self, spec: &RegionSpec) -> Result<Vec<u8>, RunSetupError> {
        let records = match self {
            BufferInit::Bytes(b) => return Ok(b.clone()),
            BufferInit::Records(r) => r,
        };
        if !spec.has_records() {
            return Err(RunSetupError::BadBuffer { name: spec.name.into(), why: "a byte buffer has no record fields (give bytes)".into() });
        }
        let mut out = vec![0u8; records.len() * spec.record_size as usize];
        for (rec, chunk) in records.iter().zip(out.chunks_exact_mut(spec.record_size as usize)) {
            for (name, value) in rec {
                let Some(f) = spec.field(name) else {
                    return Err(RunSetupError::UnknownField {
                        buffer: spec.name,
                        field: name.clone(),
                        known: spec.fields.iter().map(|f| f.name).collect(),
                    });
                };
                if !f.ty.fits(*value) {
                    return Err(RunSetupError::BadBuffer { name: spec.name.into(), why: format!("{value} does not fit field `{}` ({})", f.name, f.ty.name()) });
                }
                let (o, w) = (f.offset as usize, f.ty.size() as usize);
                chunk[o..o + w].copy_from_slice(&(*value as u64).to_le_bytes()[..w]);
            }
        }
        Ok(out)
    }
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
    /// The data region `r0` after the last call (kept after an abort, as in the kernel).
    pub data: Vec<u8>,
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

/// Parse buffer contents: hex bytes (`0a1b...`, spaces allowed), `zero:N`, `str:TEXT`, or
/// `records:FIELD=V,FIELD=V/FIELD=V,...` (records separated by `/` or `;`, fields by `,`;
/// fields not named are 0; values as for `--arg`).
pub fn parse_buffer(text: &str) -> Result<BufferInit, String> {
    if let Some(n) = text.strip_prefix("zero:") {
        let n: usize = n.parse().map_err(|_| format!("`{n}` is not a byte count"))?;
        if n > 1 << 24 {
            return Err("at most 16 MiB".into());
        }
        return Ok(BufferInit::Bytes(vec![0; n]));
    }
    if let Some(s) = text.strip_prefix("str:") {
        return Ok(BufferInit::Bytes(s.as_bytes().to_vec()));
    }
    if let Some(list) = text.strip_prefix("records:") {
        let mut records = Vec::new();
        for rec in list.split(['/', ';']).filter(|r| !r.trim().is_empty()) {
            let mut fields = Vec::new();
            for pair in rec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not FIELD=VALUE"))?;
                let v = parse_int(value.trim()).ok_or_else(|| format!("`{value}` is not an integer"))?;
                fields.push((name.trim().to_string(), v));
            }
            records.push(fields);
        }
        if records.len() > 1 << 16 {
            return Err("at most 65536 records".into());
        }
        return Ok(BufferInit::Records(records));
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
        .collect::<Result<Vec<u8>, String>>()
        .map(BufferInit::Bytes)
}

/// The facts the point's validator needs, derived from its row: the count parameter's value
/// ([`Validator::Index`]); the output region and the file's size in blocks, asked of the host's
/// `fs.file_size` and `fs.block_size` ([`Validator::BlockList`]).
pub fn facts<'a>(point: &GraftPoint, args: &[DataValue], regions: &'a [Vec<u8>], host: &mut dyn Host) -> ResultFacts<'a> {
    match point.validator {
        Validator::Index { of } => ResultFacts { candidates: args.get(of).map_or(0, |a| a.as_i64()), ..ResultFacts::default() },
        Validator::BlockList { out, file } => {
            let mut ask = |name: &str| {
                let c = abi::callable(name)?;
                let f = *args.get(file)?;
                host.call(c, &[f]).ok().flatten().map(DataValue::as_i64)
            };
            let file_blocks = match (ask("fs.file_size"), ask("fs.block_size")) {
                (Some(size), Some(block)) if block > 0 => size.max(0).saturating_add(block - 1) / block,
                _ => 0,
            };
            ResultFacts { out: regions.get(out).map_or(&[][..], Vec::as_slice), file_blocks, ..ResultFacts::default() }
        }
        Validator::ZeroOrNegative => ResultFacts::default(),
    }
}

/// The point's validator, as the kernel applies it.
pub fn validate(point: &GraftPoint, args: &[DataValue], regions: &[Vec<u8>], result: DataValue, host: &mut dyn Host) -> bool {
    point.accepts(result.as_i64(), &facts(point, args, regions, host))
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
    for (name, init) in &config.buffers {
        let idx = point
            .regions
            .iter()
            .position(|r| r.name == name)
            .map(|i| i + 1)
            .or_else(|| name.strip_prefix('r').and_then(|k| k.parse::<usize>().ok()).filter(|&k| k >= 1 && k <= point.regions.len()));
        let Some(idx) = idx else {
            return Err(RunSetupError::UnknownBuffer { name: name.clone(), known: point.regions.iter().map(|r| r.name).collect() });
        };
        regions[idx] = init.bytes(&point.regions[idx - 1])?;
    }
    // The kernel passes an extent parameter equal to its buffer's count.
    for (i, spec) in point.regions.iter().enumerate() {
        if let Extent::Param(k) = spec.extent {
            let count = regions[i + 1].len() / spec.record_size as usize;
            let value = args.get(k).map_or(0, |a| a.as_i64());
            let given = config.buffers.iter().any(|(n, _)| n == spec.name || *n == format!("r{}", i + 1));
            if given && (value < 0 || value as usize != count || !regions[i + 1].len().is_multiple_of(spec.record_size as usize)) {
                return Err(RunSetupError::Extent { param: point.params[k].name, value, buffer: spec.name, count });
            }
        }
    }
    let fuel = config.fuel.unwrap_or(verified.module().resources.fuel);
    let jit = match config.engine {
        Engine::Jit => {
            let mut loaded = graft_jit::host::Loaded::compile(verified).map_err(|e| RunSetupError::Jit(e.to_string()))?;
            // The kernel's stack for the graft's frames, so that a deep recursion aborts here
            // where it would abort there.
            loaded.set_stack_budget(graft_ir::limits::GRAFT_STACK_FRAMES);
            Some(loaded)
        }
        Engine::Interp => None,
    };
    let mut host = MockHost::default();
    let mut report = RunReport { outcome: Err(AbortReason::HostContract), fuel_used: 0, fuel, buffers: Vec::new(), data: Vec::new(), trace: Vec::new(), locks_released: 0, allocations_freed: 0 };
    for _ in 0..config.calls.max(1) {
        // What an abort puts back: the buffers (not the data region `r0`), and what the
        // transaction undoes in the callables' state.
        let saved_buffers: Vec<Vec<u8>> = regions[1..].to_vec();
        host.begin_call();
        let mut left = fuel;
        let outcome = {
            let mut slices: Vec<&mut [u8]> = regions.iter_mut().map(Vec::as_mut_slice).collect();
            match &jit {
                Some(loaded) => loaded.call(&args, &mut slices, &mut left, &mut host),
                None => graft_ir::interp::run(verified, graft_ir::Module::ENTRY, &args, &mut slices, &mut left, &mut host),
            }
        };
        let outcome = match outcome {
            Ok(Some(v)) if validate(point, &args, &regions, v, &mut host) => Ok(v),
            Ok(Some(_)) => Err(AbortReason::InvalidResult),
            Ok(None) => Err(AbortReason::HostContract),
            Err(e) => Err(e),
        };
        // Two-phase locking: every lock is released at commit or abort.
        let end = host.end_call(outcome.is_ok());
        report.locks_released = end.locks_released;
        report.allocations_freed = end.allocations_undone;
        if outcome.is_err() {
            // The kernel keeps the data region as the graft left it; everything else is undone.
            for (r, saved) in regions[1..].iter_mut().zip(saved_buffers) {
                *r = saved;
            }
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
    report.data = regions[0].clone();
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
        out.push_str("rolled back: buffers and counters restored; the data region keeps what the graft wrote (as in the kernel)\n");
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
