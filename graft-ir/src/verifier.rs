//! The verifier: the authority on which modules the kernel accepts.
//!
//! It checks, in this order, and reports every violation it finds (not only the first):
//!
//! 1. **graft-point** — the module names a graft point of the ABI table.
//! 2. **resources** — the data size is a power of two in `MIN_DATA_SIZE..=MAX_DATA_SIZE`,
//!    the fuel per call is in `1..=MAX_FUEL`, and the initial data fits the data region.
//! 3. **size-limits** — at most `MAX_FUNCTIONS` functions (at least one), `MAX_IMPORTS`
//!    imports, `MAX_BLOCKS` blocks per function (at least one), `MAX_BLOCK_INSTS`
//!    instructions per block, `MAX_INSTS` instructions in all, `MAX_PARAMS` parameters per
//!    signature, block or call.
//! 4. **imports** — each import names a callable of the ABI table that grafts may import,
//!    that this graft point allows, with exactly the ABI's signature, imported once.
//! 5. **entry-signature** — `fn0`'s signature equals the graft point's.
//! 6. **function-name** — a function name is empty or `[A-Za-z_][A-Za-z0-9_.]*`, at most
//!    `MAX_NAME_LEN` bytes.
//! 7. **entry-block** — the parameters of `b0` have the types of the function's parameters.
//! 8. **terminators** — every block is non-empty, ends in a terminator, and has no
//!    terminator before its end.
//! 9. **branch-targets** — every branch target exists, is not the entry block, and gets one
//!    argument of the right type per parameter.
//! 10. **value-numbering** — each value is defined once, and values are numbered densely
//!     (`v0 .. v(n-1)` for a function defining `n` values).
//! 11. **dominance** — every used value is defined, and in a reachable block its definition
//!     dominates the use (earlier in the same block, or in a dominating block). In an
//!     unreachable block the definition must come earlier in the verifier's order.
//! 12. **format** — the opcode belongs to its instruction format, and an instruction has a
//!     result exactly when it produces a value.
//! 13. **types** — every operand has the type its opcode requires (see each opcode's doc);
//!     handles are never operands of arithmetic, conversions, loads or stores.
//! 14. **immediates** — an `iconst` immediate fits its type (signed or unsigned).
//! 15. **regions** — a load or store names `r0` or a region the graft point passes in.
//! 16. **rights** — a store targets a writable region.
//! 17. **static-bounds** — a static offset is at most `MAX_IMM_OFFSET`; on `r0`, a static
//!     offset (and a constant dynamic offset) plus the access width lies inside the data
//!     region, since masking would silently move it.
//! 18. **calls** — the callee exists and gets one argument of the right type per parameter.
//! 19. **returns** — `return` carries a value exactly when the function returns one, of the
//!     function's return type.
//!
//! Verification is linear in the size of the module (dominance queries are O(1) after a
//! pre/post numbering of the dominator tree). The number of errors kept is capped at
//! [`MAX_ERRORS`]; the rest are counted.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::abi::{self, Callable, GraftPoint};
use crate::entity::{Block, FuncRef, ImportRef, Region, Value};
use crate::ir::{BlockCall, Function, Inst, InstData, Module};
use crate::limits::*;
use crate::opcode::{Format, IntCC, Opcode};
use crate::types::Type;

/// Most errors kept in a [`VerifyErrors`]; further ones are only counted.
pub const MAX_ERRORS: usize = 256;

/// The checks of the verifier, numbered as in this module's documentation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Rule {
    /// 1. The module names a known graft point.
    GraftPoint = 1,
    /// 2. Data size, fuel and initial data are within limits.
    Resources,
    /// 3. Counts of functions, imports, blocks, instructions and parameters.
    SizeLimits,
    /// 4. Imports are known, importable, allowed here, correctly typed, unique.
    Imports,
    /// 5. `fn0` has the graft point's signature.
    EntrySignature,
    /// 6. Function names are well-formed.
    FunctionName,
    /// 7. `b0`'s parameters match the function's signature.
    EntryBlock,
    /// 8. Blocks end in exactly one terminator.
    Terminators,
    /// 9. Branch targets exist and get matching arguments.
    BranchTargets,
    /// 10. Values are defined once and numbered densely.
    ValueNumbering,
    /// 11. Definitions dominate uses.
    Dominance,
    /// 12. Opcode and instruction format agree; results where values are produced.
    Format,
    /// 13. Operand types.
    Types,
    /// 14. `iconst` immediates fit their type.
    Immediates,
    /// 15. Regions exist at this graft point.
    Regions,
    /// 16. Stores target writable regions.
    Rights,
    /// 17. Static offsets are in bounds.
    StaticBounds,
    /// 18. Calls name existing callees with matching arguments.
    Calls,
    /// 19. Returns match the function's return type.
    Returns,
}

impl Rule {
    /// Every check, in order.
    pub const ALL: [Rule; 19] = [
        Rule::GraftPoint,
        Rule::Resources,
        Rule::SizeLimits,
        Rule::Imports,
        Rule::EntrySignature,
        Rule::FunctionName,
        Rule::EntryBlock,
        Rule::Terminators,
        Rule::BranchTargets,
        Rule::ValueNumbering,
        Rule::Dominance,
        Rule::Format,
        Rule::Types,
        Rule::Immediates,
        Rule::Regions,
        Rule::Rights,
        Rule::StaticBounds,
        Rule::Calls,
        Rule::Returns,
    ];

    /// The check's number in the module documentation.
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The check's short name, as in the log (`types`).
    pub const fn name(self) -> &'static str {
        match self {
            Rule::GraftPoint => "graft-point",
            Rule::Resources => "resources",
            Rule::SizeLimits => "size-limits",
            Rule::Imports => "imports",
            Rule::EntrySignature => "entry-signature",
            Rule::FunctionName => "function-name",
            Rule::EntryBlock => "entry-block",
            Rule::Terminators => "terminators",
            Rule::BranchTargets => "branch-targets",
            Rule::ValueNumbering => "value-numbering",
            Rule::Dominance => "dominance",
            Rule::Format => "format",
            Rule::Types => "types",
            Rule::Immediates => "immediates",
            Rule::Regions => "regions",
            Rule::Rights => "rights",
            Rule::StaticBounds => "static-bounds",
            Rule::Calls => "calls",
            Rule::Returns => "returns",
        }
    }
}

/// Where an error is: as precise as the check allows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, PartialOrd, Ord)]
pub struct Location {
    /// The function, unless the error is about the module.
    pub func: Option<FuncRef>,
    /// The block, unless the error is about the whole function.
    pub block: Option<Block>,
    /// The instruction's index in its block, unless the error is about the block header.
    pub inst: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.func, self.block, self.inst) {
            (None, _, _) => f.write_str("module"),
            (Some(func), None, _) => write!(f, "{func}"),
            (Some(func), Some(b), None) => write!(f, "{func} {b}"),
            (Some(func), Some(b), Some(i)) => write!(f, "{func} {b} #{i}"),
        }
    }
}

/// One verifier error: which check, where, the offending instruction, and why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifyError {
    /// The check that failed.
    pub rule: Rule,
    /// Where.
    pub location: Location,
    /// The instruction (or header line) in text syntax, if the error is about one.
    pub context: Option<String>,
    /// One plain reason.
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error[{}]: {}", self.rule.name(), self.location)?;
        if let Some(ctx) = &self.context {
            write!(f, ": {ctx}")?;
        }
        write!(f, "\n    = {}", self.message)
    }
}

/// Every error found in a module.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct VerifyErrors {
    /// The errors kept (at most [`MAX_ERRORS`]), in module order.
    pub errors: Vec<VerifyError>,
    /// Errors found beyond the kept ones.
    pub dropped: usize,
}

impl VerifyErrors {
    /// Total errors found.
    pub fn count(&self) -> usize {
        self.errors.len() + self.dropped
    }

    /// Whether some error is of rule `rule`.
    pub fn has(&self, rule: Rule) -> bool {
        self.errors.iter().any(|e| e.rule == rule)
    }
}

impl VerifyErrors {
    /// The log with context: every function that has errors is printed in full, each error
    /// under its offending line (or under the block or function header), the way a compiler
    /// shows a diagnostic in the source. Module-level errors come first.
    pub fn annotate(&self, module: &Module) -> String {
        use core::fmt::Write;
        let mut out = String::new();
        let note = |out: &mut String, e: &VerifyError, indent: &str| {
            let _ = writeln!(out, "{indent}; ^ error[{}]: {}", e.rule.name(), e.message);
        };
        for e in self.errors.iter().filter(|e| e.location.func.is_none()) {
            let _ = writeln!(out, "{e}");
        }
        for (fi, func) in module.functions.iter().enumerate() {
            let f = Some(FuncRef(fi as u32));
            let mine: Vec<&VerifyError> = self.errors.iter().filter(|e| e.location.func == f).collect();
            if mine.is_empty() {
                continue;
            }
            let name = if func.name.is_empty() { String::new() } else { format!(" {}", func.name) };
            let _ = writeln!(out, "function fn{fi}{name}{} {{", func.sig);
            for e in mine.iter().filter(|e| e.location.block.is_none()) {
                note(&mut out, e, "");
            }
            for (bi, b) in func.blocks.iter().enumerate() {
                let here = |e: &&&VerifyError| e.location.block == Some(Block(bi as u32));
                let _ = write!(out, "b{bi}");
                if !b.params.is_empty() {
                    let ps: Vec<String> = b.params.iter().map(|p| format!("{}: {}", p.value, p.ty)).collect();
                    let _ = write!(out, "({})", ps.join(", "));
                }
                out.push_str(":\n");
                for e in mine.iter().filter(here).filter(|e| e.location.inst.is_none()) {
                    note(&mut out, e, "");
                }
                for (ii, inst) in b.insts.iter().enumerate() {
                    let _ = writeln!(out, "    {inst}");
                    for e in mine.iter().filter(here).filter(|e| e.location.inst == Some(ii)) {
                        note(&mut out, e, "    ");
                    }
                }
            }
            out.push_str("}\n");
        }
        if self.dropped > 0 {
            let _ = writeln!(out, "... and {} more errors", self.dropped);
        }
        let n = self.count();
        let _ = write!(out, "verification failed: {n} error{}", if n == 1 { "" } else { "s" });
        out
    }
}

impl fmt::Display for VerifyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{e}")?;
        }
        if self.dropped > 0 {
            writeln!(f, "... and {} more errors", self.dropped)?;
        }
        let n = self.count();
        write!(f, "verification failed: {n} error{}", if n == 1 { "" } else { "s" })
    }
}

/// A module that passed the verifier. Only [`verify`] makes one, so holding a `Verified` is
/// proof that every check of this module's documentation holds.
#[derive(Clone, Debug)]
pub struct Verified {
    module: Module,
    point: &'static GraftPoint,
    callables: Vec<&'static Callable>,
    value_types: Vec<Vec<Type>>,
}

impl Verified {
    /// The verified module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The graft point it implements.
    pub fn point(&self) -> &'static GraftPoint {
        self.point
    }

    /// The callable behind import `i`.
    pub fn callable(&self, i: ImportRef) -> Option<&'static Callable> {
        self.callables.get(i.index()).copied()
    }

    /// The callables behind the imports, in import order.
    pub fn callables(&self) -> &[&'static Callable] {
        &self.callables
    }

    /// The type of every value of function `f`, indexed by value number.
    pub fn value_types(&self, f: FuncRef) -> &[Type] {
        self.value_types.get(f.index()).map_or(&[], Vec::as_slice)
    }

    /// Give the module back.
    pub fn into_module(self) -> Module {
        self.module
    }
}

/// Verify a module. Returns the [`Verified`] module, or every error found.
pub fn verify(module: Module) -> Result<Verified, VerifyErrors> {
    let mut v = Verifier { errors: VerifyErrors::default(), module: &module, point: None };
    let callables = v.module_checks();
    let mut value_types = Vec::with_capacity(module.functions.len());
    if module.functions.len() <= MAX_FUNCTIONS {
        for (i, func) in module.functions.iter().enumerate() {
            value_types.push(v.function(FuncRef(i as u32), func));
        }
    }
    let point = v.point;
    let mut errors = v.errors;
    match point {
        Some(point) if errors.count() == 0 => {
            Ok(Verified { module, point, callables, value_types })
        }
        _ => {
            errors.errors.sort_by_key(|e| e.location);
            Err(errors)
        }
    }
}

struct Verifier<'m> {
    errors: VerifyErrors,
    module: &'m Module,
    point: Option<&'static GraftPoint>,
}

/// Where a value is defined: its block and position (`None` for a block parameter, which
/// comes before every instruction).
#[derive(Clone, Copy)]
struct Def {
    block: u32,
    pos: Option<usize>,
}

/// Control-flow facts of one function.
struct Cfg {
    /// Whether the block is reachable from the entry.
    reachable: Vec<bool>,
    /// Reachable blocks in reverse post-order.
    rpo: Vec<u32>,
    /// Pre- and post-order numbers in the dominator tree (reachable blocks only).
    pre: Vec<u32>,
    post: Vec<u32>,
}

impl Cfg {
    /// Whether `a` dominates `b` (both reachable).
    fn dominates(&self, a: usize, b: usize) -> bool {
        match (self.pre.get(a), self.pre.get(b), self.post.get(a), self.post.get(b)) {
            (Some(pa), Some(pb), Some(qa), Some(qb)) => pa <= pb && qb <= qa,
            _ => false,
        }
    }
}

fn type_list(tys: &[Type]) -> String {
    let mut s = String::from("(");
    for (i, t) in tys.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&t.to_string());
    }
    s.push(')');
    s
}

fn fits(ty: Type, imm: i64) -> bool {
    match ty {
        Type::I64 => true,
        Type::Handle(_) => false,
        _ => {
            let bits = ty.bits();
            let min = -(1i64 << (bits - 1));
            let max = (1i64 << bits) - 1;
            (min..=max).contains(&imm)
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.is_empty()
        || (name.len() <= MAX_NAME_LEN
            && name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.'))
}

impl<'m> Verifier<'m> {
    fn report(&mut self, rule: Rule, location: Location, context: Option<String>, message: String) {
        if self.errors.errors.len() < MAX_ERRORS {
            self.errors.errors.push(VerifyError { rule, location, context, message });
        } else {
            self.errors.dropped += 1;
        }
    }

    fn module_error(&mut self, rule: Rule, message: String) {
        self.report(rule, Location::default(), None, message);
    }

    /// Checks 1-4 and the module-wide part of 3. Returns the callable of each import (for
    /// imports that resolve; the list is only used when verification succeeds).
    fn module_checks(&mut self) -> Vec<&'static Callable> {
        let m = self.module;
        self.point = abi::graft_point(&m.point);
        if self.point.is_none() {
            let known: Vec<&str> = abi::GRAFT_POINTS.iter().map(|p| p.name).collect();
            self.module_error(
                Rule::GraftPoint,
                format!("unknown graft point `{}` (known: {})", m.point, known.join(", ")),
            );
        }

        let r = m.resources;
        if !r.data_size.is_power_of_two() || !(MIN_DATA_SIZE..=MAX_DATA_SIZE).contains(&r.data_size) {
            self.module_error(
                Rule::Resources,
                format!(
                    "data size {} must be a power of two between {MIN_DATA_SIZE} and {MAX_DATA_SIZE}",
                    r.data_size
                ),
            );
        }
        if !(1..=MAX_FUEL).contains(&r.fuel) {
            self.module_error(
                Rule::Resources,
                format!("fuel per call {} must be between 1 and {MAX_FUEL}", r.fuel),
            );
        }
        if m.data.len() > r.data_size as usize {
            self.module_error(
                Rule::Resources,
                format!("initial data of {} bytes does not fit the {}-byte data region", m.data.len(), r.data_size),
            );
        }

        if m.functions.is_empty() {
            self.module_error(Rule::SizeLimits, String::from("the module has no functions (fn0 is the entry)"));
        }
        if m.functions.len() > MAX_FUNCTIONS {
            self.module_error(
                Rule::SizeLimits,
                format!("{} functions exceed the limit of {MAX_FUNCTIONS}", m.functions.len()),
            );
        }
        if m.imports.len() > MAX_IMPORTS {
            self.module_error(
                Rule::SizeLimits,
                format!("{} imports exceed the limit of {MAX_IMPORTS}", m.imports.len()),
            );
        }
        let total = m.inst_count();
        if total > MAX_INSTS {
            self.module_error(
                Rule::SizeLimits,
                format!("{total} instructions exceed the limit of {MAX_INSTS}"),
            );
        }

        let mut callables = Vec::new();
        for (i, imp) in m.imports.iter().enumerate().take(MAX_IMPORTS) {
            let line = Some(format!("import {} = {imp}", ImportRef(i as u32)));
            let err = |this: &mut Self, msg: String| {
                this.report(Rule::Imports, Location::default(), line.clone(), msg)
            };
            if m.imports[..i].iter().any(|o| o.name == imp.name) {
                err(self, format!("`{}` is imported twice", imp.name));
            }
            let Some(c) = abi::callable(&imp.name) else {
                err(self, format!("no kernel callable is named `{}`", imp.name));
                continue;
            };
            callables.push(c);
            if !c.importable {
                err(self, format!("`{}` is privileged: grafts may never import it", c.name));
            } else if let Some(p) = self.point
                && !p.allows(c.name) {
                    err(self, format!("`{}` may not be imported by a graft at `{}`", c.name, p.name));
                }
            let expected = c.signature();
            if imp.sig != expected {
                err(self, format!("`{}` has signature {expected}, not {}", c.name, imp.sig));
            }
        }

        if let (Some(p), Some(f0)) = (self.point, m.functions.first()) {
            let expected = p.signature();
            if f0.sig != expected {
                self.report(
                    Rule::EntrySignature,
                    Location { func: Some(FuncRef(0)), ..Location::default() },
                    Some(format!("function fn0{}", f0.sig)),
                    format!("the entry function of `{}` must have signature {expected}", p.name),
                );
            }
        }
        callables
    }

    /// Checks 6-19 on one function; returns the value types (meaningful only without errors).
    fn function(&mut self, fref: FuncRef, func: &Function) -> Vec<Type> {
        let floc = Location { func: Some(fref), ..Location::default() };
        if !valid_name(&func.name) {
            self.report(
                Rule::FunctionName,
                floc,
                None,
                format!("function name {:?} must match [A-Za-z_][A-Za-z0-9_.]* and be at most {MAX_NAME_LEN} bytes", func.name),
            );
        }
        if func.sig.params.len() > MAX_PARAMS {
            self.report(Rule::SizeLimits, floc, None, format!("{} parameters exceed the limit of {MAX_PARAMS}", func.sig.params.len()));
        }
        if func.blocks.is_empty() {
            self.report(Rule::SizeLimits, floc, None, String::from("the function has no blocks (b0 is the entry)"));
            return Vec::new();
        }
        if func.blocks.len() > MAX_BLOCKS {
            self.report(Rule::SizeLimits, floc, None, format!("{} blocks exceed the limit of {MAX_BLOCKS}", func.blocks.len()));
            return Vec::new();
        }
        let mut oversized = false;
        for (bi, b) in func.blocks.iter().enumerate() {
            let bloc = Location { block: Some(Block(bi as u32)), ..floc };
            if b.insts.len() > MAX_BLOCK_INSTS {
                self.report(Rule::SizeLimits, bloc, None, format!("{} instructions exceed the per-block limit of {MAX_BLOCK_INSTS}", b.insts.len()));
                oversized = true;
            }
            if b.params.len() > MAX_PARAMS {
                self.report(Rule::SizeLimits, bloc, None, format!("{} block parameters exceed the limit of {MAX_PARAMS}", b.params.len()));
            }
        }
        if oversized || self.module.inst_count() > MAX_INSTS {
            // Do not spend linear work on a module already refused for its size.
            return Vec::new();
        }

        // 7. entry block parameters.
        let entry = &func.blocks[0];
        let entry_tys: Vec<Type> = entry.params.iter().map(|p| p.ty).collect();
        if entry_tys != func.sig.params {
            self.report(
                Rule::EntryBlock,
                Location { block: Some(Block(0)), ..floc },
                None,
                format!(
                    "b0 has parameters {} but the function's signature has {}",
                    type_list(&entry_tys),
                    type_list(&func.sig.params)
                ),
            );
        }

        // 8, 9 (existence). Successors of each block, from its terminator.
        let nblocks = func.blocks.len();
        let mut succs: Vec<Vec<u32>> = vec![Vec::new(); nblocks];
        for (bi, b) in func.blocks.iter().enumerate() {
            let bloc = Location { block: Some(Block(bi as u32)), ..floc };
            let Some(last) = b.insts.last() else {
                self.report(Rule::Terminators, bloc, None, String::from("the block is empty; it must end in a terminator"));
                continue;
            };
            for (ii, inst) in b.insts.iter().enumerate().take(b.insts.len() - 1) {
                if inst.data.is_terminator() {
                    self.report(
                        Rule::Terminators,
                        Location { inst: Some(ii), ..bloc },
                        Some(inst.to_string()),
                        String::from("a terminator before the end of the block (the rest is dead)"),
                    );
                }
            }
            if !last.data.is_terminator() {
                self.report(
                    Rule::Terminators,
                    Location { inst: Some(b.insts.len() - 1), ..bloc },
                    Some(last.to_string()),
                    String::from("the block does not end in a terminator (jump, brif, return, abort)"),
                );
                continue;
            }
            for target in last.data.targets() {
                let t = target.block.index();
                let loc = Location { inst: Some(b.insts.len() - 1), ..bloc };
                if t >= nblocks {
                    self.report(Rule::BranchTargets, loc, Some(last.to_string()), format!("branch to {}, which does not exist", target.block));
                } else if t == 0 {
                    self.report(Rule::BranchTargets, loc, Some(last.to_string()), String::from("branch to the entry block b0 (its parameters are the function's)"));
                } else {
                    succs[bi].push(t as u32);
                }
            }
        }

        let cfg = cfg(&succs);

        // 10. Value definitions.
        let ndefs: usize = func
            .blocks
            .iter()
            .map(|b| b.params.len() + b.insts.iter().filter(|i| i.result.is_some()).count())
            .sum();
        let mut defs: Vec<Option<Def>> = vec![None; ndefs];
        let mut types: Vec<Option<Type>> = vec![None; ndefs];
        let mut consts: Vec<Option<i64>> = vec![None; ndefs];
        for (bi, b) in func.blocks.iter().enumerate() {
            let bloc = Location { block: Some(Block(bi as u32)), ..floc };
            let mut define = |this: &mut Self, v: Value, pos: Option<usize>, ctx: &dyn Fn() -> String| {
                let loc = Location { inst: pos, ..bloc };
                match defs.get_mut(v.index()) {
                    None => this.report(
                        Rule::ValueNumbering,
                        loc,
                        Some(ctx()),
                        format!("{v} is out of range: this function defines {ndefs} values, numbered v0..v{}", ndefs.saturating_sub(1)),
                    ),
                    Some(Some(_)) => this.report(Rule::ValueNumbering, loc, Some(ctx()), format!("{v} is defined more than once")),
                    Some(slot) => *slot = Some(Def { block: bi as u32, pos }),
                }
            };
            for p in &b.params {
                define(self, p.value, None, &|| format!("{}: {}", p.value, p.ty));
                if let Some(t) = types.get_mut(p.value.index()) {
                    *t = Some(p.ty);
                }
            }
            for (ii, inst) in b.insts.iter().enumerate() {
                if let Some(r) = inst.result {
                    define(self, r, Some(ii), &|| inst.to_string());
                }
            }
        }

        // 11-19, block by block: reachable blocks in reverse post-order (so definitions are
        // typed before their uses), then unreachable blocks in layout order.
        let order = cfg
            .rpo
            .iter()
            .copied()
            .chain((0..nblocks as u32).filter(|&b| !cfg.reachable[b as usize]));
        let mut fc = FnCheck {
            v: self,
            func,
            fref,
            cfg: &cfg,
            defs: &defs,
            types: &mut types,
            consts: &mut consts,
            done: vec![false; nblocks],
        };
        for b in order {
            fc.block(b);
            fc.done[b as usize] = true;
        }
        types.into_iter().map(|t| t.unwrap_or(Type::I8)).collect()
    }
}

/// Reachability, reverse post-order and dominator-tree numbering.
fn cfg(succs: &[Vec<u32>]) -> Cfg {
    let n = succs.len();
    let mut reachable = vec![false; n];
    let mut post_order = Vec::with_capacity(n);
    // Iterative DFS: (block, next successor index).
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    reachable[0] = true;
    while let Some(top) = stack.last_mut() {
        let (b, i) = *top;
        match succs[b as usize].get(i) {
            Some(&s) => {
                top.1 += 1;
                if !reachable[s as usize] {
                    reachable[s as usize] = true;
                    stack.push((s, 0));
                }
            }
            None => {
                post_order.push(b);
                stack.pop();
            }
        }
    }
    let rpo: Vec<u32> = post_order.iter().rev().copied().collect();
    let mut rpo_index = vec![u32::MAX; n];
    for (i, &b) in rpo.iter().enumerate() {
        rpo_index[b as usize] = i as u32;
    }
    let mut preds: Vec<Vec<u32>> = vec![Vec::new(); n];
    for &b in &rpo {
        for &s in &succs[b as usize] {
            preds[s as usize].push(b);
        }
    }
    // Cooper, Harvey, Kennedy: "A Simple, Fast Dominance Algorithm".
    let mut idom = vec![u32::MAX; n];
    idom[0] = 0;
    let mut changed = true;
    while changed {
        changed = false;
        for &b in rpo.iter().skip(1) {
            let mut new_idom = u32::MAX;
            for &p in &preds[b as usize] {
                if idom[p as usize] == u32::MAX {
                    continue;
                }
                new_idom = if new_idom == u32::MAX {
                    p
                } else {
                    let (mut x, mut y) = (p, new_idom);
                    while x != y {
                        while rpo_index[x as usize] > rpo_index[y as usize] {
                            x = idom[x as usize];
                        }
                        while rpo_index[y as usize] > rpo_index[x as usize] {
                            y = idom[y as usize];
                        }
                    }
                    x
                };
            }
            if new_idom != idom[b as usize] {
                idom[b as usize] = new_idom;
                changed = true;
            }
        }
    }
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
    for &b in rpo.iter().skip(1) {
        children[idom[b as usize] as usize].push(b);
    }
    let mut pre = vec![u32::MAX; n];
    let mut post = vec![0u32; n];
    let (mut pre_n, mut post_n) = (0u32, 0u32);
    let mut stack: Vec<(u32, usize)> = vec![(0, 0)];
    pre[0] = 0;
    pre_n += 1;
    while let Some(top) = stack.last_mut() {
        let (b, i) = *top;
        match children[b as usize].get(i) {
            Some(&c) => {
                top.1 += 1;
                pre[c as usize] = pre_n;
                pre_n += 1;
                stack.push((c, 0));
            }
            None => {
                post[b as usize] = post_n;
                post_n += 1;
                stack.pop();
            }
        }
    }
    // Unreachable blocks dominate nothing and are dominated by nothing.
    for b in 0..n {
        if !reachable[b] {
            pre[b] = u32::MAX;
            post[b] = u32::MAX;
        }
    }
    Cfg { reachable, rpo, pre, post }
}

struct FnCheck<'a, 'm> {
    v: &'a mut Verifier<'m>,
    func: &'a Function,
    fref: FuncRef,
    cfg: &'a Cfg,
    defs: &'a [Option<Def>],
    types: &'a mut Vec<Option<Type>>,
    consts: &'a mut Vec<Option<i64>>,
    done: Vec<bool>,
}

/// The current instruction, for error reports.
struct At<'i> {
    loc: Location,
    inst: &'i Inst,
}

impl FnCheck<'_, '_> {
    fn err(&mut self, rule: Rule, at: &At<'_>, message: String) {
        self.v.report(rule, at.loc, Some(at.inst.to_string()), message);
    }

    /// Check a use of `val` at `at` (instruction `pos` of block `block`); its type if known.
    fn use_value(&mut self, val: Value, block: u32, pos: usize, at: &At<'_>) -> Option<Type> {
        let Some(def) = self.defs.get(val.index()).copied().flatten() else {
            self.err(Rule::Dominance, at, format!("{val} is not defined in this function"));
            return None;
        };
        let ok = if def.block == block {
            def.pos.is_none_or(|p| p < pos)
        } else if self.cfg.reachable[block as usize] {
            self.cfg.dominates(def.block as usize, block as usize)
        } else {
            self.done.get(def.block as usize).copied().unwrap_or(false)
                || self.cfg.reachable[def.block as usize]
        };
        if !ok {
            let why = if def.block == block {
                match def.pos {
                    Some(p) if p == pos => format!("{val} is used by the instruction that defines it"),
                    _ => format!("{val} is used before its definition"),
                }
            } else {
                format!(
                    "{val} is defined in {}, which does not dominate {}",
                    Block(def.block),
                    Block(block)
                )
            };
            self.err(Rule::Dominance, at, why);
            return None;
        }
        self.types.get(val.index()).copied().flatten()
    }

    fn int_operand(&mut self, ty: Option<Type>, val: Value, op: Opcode, at: &At<'_>) -> Option<Type> {
        match ty {
            Some(t) if t.is_int() => Some(t),
            Some(t) => {
                self.err(Rule::Types, at, format!("{op} needs an integer operand, but {val} has type {t}"));
                None
            }
            None => None,
        }
    }

    fn block_args(&mut self, call: &BlockCall, block: u32, pos: usize, at: &At<'_>) {
        let arg_tys: Vec<Option<Type>> = call.args.iter().map(|&a| self.use_value(a, block, pos, at)).collect();
        if call.args.len() > MAX_PARAMS {
            self.err(Rule::SizeLimits, at, format!("{} block arguments exceed the limit of {MAX_PARAMS}", call.args.len()));
        }
        let Some(target) = self.func.blocks.get(call.block.index()) else { return };
        if call.block.index() == 0 {
            return;
        }
        if target.params.len() != call.args.len() {
            self.err(
                Rule::BranchTargets,
                at,
                format!("{} takes {} arguments, {} given", call.block, target.params.len(), call.args.len()),
            );
            return;
        }
        for ((arg, ty), param) in call.args.iter().zip(arg_tys).zip(&target.params) {
            if let Some(t) = ty
                && t != param.ty {
                    self.err(
                        Rule::BranchTargets,
                        at,
                        format!("argument {arg} has type {t}, but {}'s parameter {} has type {}", call.block, param.value, param.ty),
                    );
                }
        }
    }

    fn call_args(&mut self, callee: &str, params: &[Type], args: &[Value], block: u32, pos: usize, at: &At<'_>) {
        let tys: Vec<Option<Type>> = args.iter().map(|&a| self.use_value(a, block, pos, at)).collect();
        if args.len() != params.len() {
            self.err(Rule::Calls, at, format!("{callee} takes {} arguments {}, {} given", params.len(), type_list(params), args.len()));
            return;
        }
        for (i, ((arg, ty), want)) in args.iter().zip(tys).zip(params).enumerate() {
            if let Some(t) = ty
                && t != *want {
                    self.err(Rule::Calls, at, format!("argument {i} ({arg}) of {callee} has type {t}, expected {want}"));
                }
        }
    }

    fn block(&mut self, b: u32) {
        let Some(data) = self.func.blocks.get(b as usize) else { return };
        let bloc = Location { func: Some(self.fref), block: Some(Block(b)), inst: None };
        for (pos, inst) in data.insts.iter().enumerate() {
            let at = At { loc: Location { inst: Some(pos), ..bloc }, inst };
            let result = self.inst(b, pos, inst, &at);
            let produces = match &inst.data {
                InstData::Call { func, .. } => {
                    self.v.module.function(*func).map(|f| f.sig.ret.is_some())
                }
                InstData::CallImport { import, .. } => {
                    self.v.module.import(*import).map(|i| i.sig.ret.is_some())
                }
                d => Some(!matches!(
                    d.opcode().format(),
                    Format::Store | Format::Jump | Format::Brif | Format::Return | Format::Abort
                )),
            };
            match (produces, inst.result) {
                (Some(true), None) => self.err(Rule::Format, &at, format!("{} produces a value, but no result is named", inst.data.opcode())),
                (Some(false), Some(r)) => self.err(Rule::Format, &at, format!("{} produces no value to define {r}", inst.data.opcode())),
                _ => {}
            }
            if let Some(r) = inst.result {
                // Only record a type for the definition that owns the slot.
                let owns = self.defs.get(r.index()).copied().flatten().is_some_and(|d| d.block == b && d.pos == Some(pos));
                if owns {
                    if let Some(slot) = self.types.get_mut(r.index()) {
                        *slot = result;
                    }
                    if let (InstData::Iconst { imm, .. }, Some(slot)) = (&inst.data, self.consts.get_mut(r.index())) {
                        *slot = Some(*imm);
                    }
                }
            }
        }
    }

    /// Checks one instruction; returns the type of its result, if it has one and it is known.
    fn inst(&mut self, b: u32, pos: usize, inst: &Inst, at: &At<'_>) -> Option<Type> {
        let op = inst.data.opcode();
        if op.format() != format_of(&inst.data) {
            self.err(Rule::Format, at, format!("{op} is not an instruction of this form"));
            return None;
        }
        match &inst.data {
            InstData::Iconst { ty, imm } => {
                if !ty.is_int() {
                    self.err(Rule::Types, at, format!("iconst makes integers, not {ty}"));
                    return None;
                }
                if !fits(*ty, *imm) {
                    self.err(Rule::Immediates, at, format!("{imm} does not fit in {ty}"));
                }
                Some(*ty)
            }
            InstData::Binary { args, .. } => {
                let ta = self.use_value(args[0], b, pos, at);
                let tb = self.use_value(args[1], b, pos, at);
                let ta = self.int_operand(ta, args[0], op, at);
                let tb = self.int_operand(tb, args[1], op, at);
                if let (Some(x), Some(y)) = (ta, tb)
                    && x != y {
                        self.err(Rule::Types, at, format!("{op} operands differ in type: {} is {x}, {} is {y}", args[0], args[1]));
                    }
                ta.or(tb)
            }
            InstData::Unary { arg, .. } => {
                let t = self.use_value(*arg, b, pos, at);
                self.int_operand(t, *arg, op, at)
            }
            InstData::Icmp { cond, args } => {
                let ta = self.use_value(args[0], b, pos, at);
                let tb = self.use_value(args[1], b, pos, at);
                if let (Some(x), Some(y)) = (ta, tb) {
                    if x != y {
                        self.err(Rule::Types, at, format!("icmp operands differ in type: {} is {x}, {} is {y}", args[0], args[1]));
                    } else if x.is_handle() && !matches!(cond, IntCC::Eq | IntCC::Ne) {
                        self.err(Rule::Types, at, format!("handles can only be compared with eq or ne, not {cond}"));
                    }
                }
                Some(Type::I8)
            }
            InstData::Select { args } => {
                let tc = self.use_value(args[0], b, pos, at);
                let ta = self.use_value(args[1], b, pos, at);
                let tb = self.use_value(args[2], b, pos, at);
                if let Some(t) = tc
                    && t != Type::I8 {
                        self.err(Rule::Types, at, format!("select condition {} must be an i8, not {t}", args[0]));
                    }
                if let (Some(x), Some(y)) = (ta, tb)
                    && x != y {
                        self.err(Rule::Types, at, format!("select arms differ in type: {} is {x}, {} is {y}", args[1], args[2]));
                    }
                ta.or(tb)
            }
            InstData::Convert { ty, arg, .. } => {
                let t = self.use_value(*arg, b, pos, at);
                let t = self.int_operand(t, *arg, op, at);
                if !ty.is_int() {
                    self.err(Rule::Types, at, format!("{op} converts to an integer type, not {ty}"));
                    return None;
                }
                if let Some(from) = t {
                    let ok = match op {
                        Opcode::Ireduce => ty.bits() < from.bits(),
                        _ => ty.bits() > from.bits(),
                    };
                    if !ok {
                        let dir = if op == Opcode::Ireduce { "narrower" } else { "wider" };
                        self.err(Rule::Types, at, format!("{op} from {from} to {ty}: the result must be {dir} than the operand"));
                    }
                }
                Some(*ty)
            }
            InstData::Load { ty, region, offset, imm } => {
                self.address(*region, *offset, *imm, ty.bytes(), false, b, pos, at);
                if !ty.is_int() {
                    self.err(Rule::Types, at, format!("load reads integers, not {ty}"));
                    return None;
                }
                Some(*ty)
            }
            InstData::Store { region, offset, imm, value } => {
                let t = self.use_value(*value, b, pos, at);
                let t = self.int_operand(t, *value, op, at);
                let width = t.map_or(1, Type::bytes);
                self.address(*region, *offset, *imm, width, true, b, pos, at);
                None
            }
            InstData::Call { func, args } => {
                let Some(callee) = self.v.module.function(*func) else {
                    for &a in args {
                        self.use_value(a, b, pos, at);
                    }
                    self.err(Rule::Calls, at, format!("{func} does not exist (the module has {} functions)", self.v.module.functions.len()));
                    return None;
                };
                let name = if callee.name.is_empty() { func.to_string() } else { format!("{func} ({})", callee.name) };
                self.call_args(&name, &callee.sig.params, args, b, pos, at);
                callee.sig.ret
            }
            InstData::CallImport { import, args } => {
                let Some(imp) = self.v.module.import(*import) else {
                    for &a in args {
                        self.use_value(a, b, pos, at);
                    }
                    self.err(Rule::Calls, at, format!("{import} does not exist (the module has {} imports)", self.v.module.imports.len()));
                    return None;
                };
                let name = format!("{import} ({})", imp.name);
                self.call_args(&name, &imp.sig.params, args, b, pos, at);
                imp.sig.ret
            }
            InstData::Jump { dest } => {
                self.block_args(dest, b, pos, at);
                None
            }
            InstData::Brif { cond, then_dest, else_dest } => {
                if let Some(t) = self.use_value(*cond, b, pos, at)
                    && t != Type::I8 {
                        self.err(Rule::Types, at, format!("brif condition {cond} must be an i8, not {t}"));
                    }
                self.block_args(then_dest, b, pos, at);
                self.block_args(else_dest, b, pos, at);
                None
            }
            InstData::Return { arg } => {
                let t = arg.and_then(|a| self.use_value(a, b, pos, at));
                match (self.func.sig.ret, arg) {
                    (Some(want), Some(a)) => {
                        if let Some(t) = t
                            && t != want {
                                self.err(Rule::Returns, at, format!("returns {a} of type {t}, but the function returns {want}"));
                            }
                    }
                    (Some(want), None) => self.err(Rule::Returns, at, format!("the function returns {want}, but no value is given")),
                    (None, Some(a)) => self.err(Rule::Returns, at, format!("the function returns nothing, but {a} is given")),
                    (None, None) => {}
                }
                None
            }
            InstData::Abort { .. } => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn address(&mut self, region: Region, offset: Value, imm: u32, width: u32, store: bool, b: u32, pos: usize, at: &At<'_>) {
        if let Some(t) = self.use_value(offset, b, pos, at)
            && t != Type::I32 && t != Type::I64 {
                self.err(Rule::Types, at, format!("offset {offset} must be an i32 or i64, not {t}"));
            }
        if imm > MAX_IMM_OFFSET {
            self.err(Rule::StaticBounds, at, format!("static offset {imm} exceeds the limit of {MAX_IMM_OFFSET}"));
        }
        if region == Region::DATA {
            let size = u64::from(self.v.module.resources.data_size);
            let konst = self.consts.get(offset.index()).copied().flatten();
            let off_ty = self.types.get(offset.index()).copied().flatten();
            let dynamic = match (konst, off_ty) {
                (Some(c), Some(Type::I32)) => c as u32 as u64,
                (Some(c), _) => c as u64,
                (None, _) => 0,
            };
            let end = u128::from(dynamic) + u128::from(imm) + u128::from(width);
            if end > u128::from(size) {
                let what = if konst.is_some() { "constant offset" } else { "static offset" };
                self.err(
                    Rule::StaticBounds,
                    at,
                    format!(
                        "{what} {} + {width} bytes is outside r0 ({size} bytes); the access would be masked elsewhere",
                        u128::from(dynamic) + u128::from(imm)
                    ),
                );
            }
            return;
        }
        let Some(point) = self.v.point else { return };
        match point.region(region) {
            None => self.err(
                Rule::Regions,
                at,
                format!(
                    "{region} does not exist at `{}` (regions: r0{})",
                    point.name,
                    (1..=point.regions.len()).map(|i| format!(", r{i}")).collect::<String>()
                ),
            ),
            Some(spec) if store && !spec.rights.writable() => self.err(
                Rule::Rights,
                at,
                format!("{region} ({}) is read-only at `{}`", spec.name, point.name),
            ),
            Some(_) => {}
        }
    }
}

/// The format an `InstData` variant stands for.
fn format_of(d: &InstData) -> Format {
    match d {
        InstData::Iconst { .. } => Format::Iconst,
        InstData::Binary { .. } => Format::Binary,
        InstData::Unary { .. } => Format::Unary,
        InstData::Icmp { .. } => Format::Icmp,
        InstData::Select { .. } => Format::Select,
        InstData::Convert { .. } => Format::Convert,
        InstData::Load { .. } => Format::Load,
        InstData::Store { .. } => Format::Store,
        InstData::Call { .. } => Format::Call,
        InstData::CallImport { .. } => Format::CallImport,
        InstData::Jump { .. } => Format::Jump,
        InstData::Brif { .. } => Format::Brif,
        InstData::Return { .. } => Format::Return,
        InstData::Abort { .. } => Format::Abort,
    }
}

impl core::error::Error for VerifyError {}
impl core::error::Error for VerifyErrors {}
