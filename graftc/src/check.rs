//! The type checker: resolves names, checks types against each other and against the graft
//! ABI table, lays out the data region, and produces the typed tree ([`Program`]) that
//! lowering turns into IR.
//!
//! It reports every error it finds and keeps going: an expression that fails to check gets
//! the type `{error}`, which is compatible with everything, so one mistake is reported once
//! and not again at every use.

use std::collections::HashMap;

use graft_ir::abi::{self, Callable, GraftPoint};
use graft_ir::{HandleKind, Type};

use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::syntax::{BinOp, Block, Expr, ExprKind, FnDecl, Ident, Item, StmtKind, TypeExpr, UnOp};

/// Fuel per call when the file does not say (`fuel N;`).
pub const DEFAULT_FUEL: u64 = 100_000;

/// The abort code of an array index out of range (a compiler-inserted check). Chosen high
/// so that it does not collide with the small codes grafts pick for `abort(n)`.
pub const ARRAY_INDEX_ABORT: u32 = 0xFFFF_0001;

/// A type of the language.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Ty {
    /// An integer; `signed` picks signed or unsigned division, comparison, shift right and
    /// extension. Both views have one IR type.
    Int {
        /// 8, 16, 32 or 64.
        bits: u8,
        /// Signed (`iN`) or unsigned (`uN`).
        signed: bool,
    },
    /// `bool`: an i8 holding 0 or 1.
    Bool,
    /// An opaque kernel handle.
    Handle(HandleKind),
    /// The "type" of a call to something returning nothing.
    Unit,
    /// The type of an expression that failed to check (already reported).
    Error,
}

impl Ty {
    /// `i32`.
    pub const I32: Ty = Ty::Int { bits: 32, signed: true };
    /// `i64`.
    pub const I64: Ty = Ty::Int { bits: 64, signed: true };

    fn from_name(name: &str) -> Option<Ty> {
        Some(match name {
            "i8" => Ty::Int { bits: 8, signed: true },
            "i16" => Ty::Int { bits: 16, signed: true },
            "i32" => Ty::Int { bits: 32, signed: true },
            "i64" => Ty::Int { bits: 64, signed: true },
            "u8" => Ty::Int { bits: 8, signed: false },
            "u16" => Ty::Int { bits: 16, signed: false },
            "u32" => Ty::Int { bits: 32, signed: false },
            "u64" => Ty::Int { bits: 64, signed: false },
            "bool" => Ty::Bool,
            _ => Ty::Handle(HandleKind::from_name(name)?),
        })
    }

    /// The language's view of an IR type (integers as signed).
    pub fn from_ir(t: Type) -> Ty {
        match t {
            Type::Handle(k) => Ty::Handle(k),
            t => Ty::Int { bits: t.bits() as u8, signed: true },
        }
    }

    /// The IR type; `None` for `Unit` and `Error`.
    pub fn ir(self) -> Option<Type> {
        Some(match self {
            Ty::Int { bits: 8, .. } | Ty::Bool => Type::I8,
            Ty::Int { bits: 16, .. } => Type::I16,
            Ty::Int { bits: 32, .. } => Type::I32,
            Ty::Int { .. } => Type::I64,
            Ty::Handle(k) => Type::Handle(k),
            Ty::Unit | Ty::Error => return None,
        })
    }

    fn is_int(self) -> bool {
        matches!(self, Ty::Int { .. } | Ty::Error)
    }

    /// Whether a value of type `self` may be used where `want` is expected.
    fn fits(self, want: Ty) -> bool {
        self == want || self == Ty::Error || want == Ty::Error
    }

    /// Bytes it takes in the data region.
    fn size(self) -> u32 {
        match self {
            Ty::Int { bits, .. } => u32::from(bits) / 8,
            Ty::Bool => 1,
            _ => 8,
        }
    }
}

impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ty::Int { bits, signed } => write!(f, "{}{bits}", if *signed { 'i' } else { 'u' }),
            Ty::Bool => f.write_str("bool"),
            Ty::Handle(k) => f.write_str(k.name()),
            Ty::Unit => f.write_str("()"),
            Ty::Error => f.write_str("{error}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The typed tree

/// A local variable of a function (parameters first).
pub type VarId = usize;

/// A checked graft: everything lowering needs.
#[derive(Clone, Debug)]
pub struct Program {
    /// The graft point.
    pub point: &'static GraftPoint,
    /// Fuel per call.
    pub fuel: u64,
    /// Data region size (a power of two).
    pub data_size: u32,
    /// Initial data bytes.
    pub data: Vec<u8>,
    /// Functions; `functions[0]` is the graft's entry.
    pub functions: Vec<HFunc>,
    /// Callables imported, in import order.
    pub imports: Vec<&'static Callable>,
}

/// A checked function.
#[derive(Clone, Debug)]
pub struct HFunc {
    /// Its name.
    pub name: String,
    /// Parameter variables (`0..params.len()`), with types.
    pub params: Vec<Ty>,
    /// Return type; `Unit` for none.
    pub ret: Ty,
    /// The type of every local variable.
    pub vars: Vec<Ty>,
    /// The body.
    pub body: Vec<HStmt>,
}

/// A place in the data region or a buffer: `region[offset + imm]` of type `ty`.
#[derive(Clone, Debug)]
pub struct HPlace {
    /// 0 for the data region, k for buffer `rk`.
    pub region: u32,
    /// Dynamic index (an i64 expression), if any; the byte offset is `index * scale + imm`.
    pub index: Option<Box<HExpr>>,
    /// Bytes per index step (1 for buffers, the element size for arrays).
    pub scale: u32,
    /// Static byte offset.
    pub imm: u32,
    /// The element type accessed.
    pub ty: Ty,
    /// For data-region arrays: the length the index is checked against (unsigned).
    pub bound: Option<u32>,
}

/// A checked statement.
#[derive(Clone, Debug)]
pub enum HStmt {
    /// Define (or redefine) a variable.
    Set(VarId, HExpr),
    /// Write memory.
    Store(HPlace, HExpr),
    /// `if`
    If(HExpr, Vec<HStmt>, Vec<HStmt>),
    /// `while`
    While(HExpr, Vec<HStmt>),
    /// `for var in start..end`: the end is evaluated once, into `end_var`.
    For {
        /// The counter.
        var: VarId,
        /// Holds the end bound.
        end_var: VarId,
        /// Start.
        start: HExpr,
        /// End.
        end: HExpr,
        /// Body.
        body: Vec<HStmt>,
    },
    /// `break`
    Break,
    /// `continue`
    Continue,
    /// `return`
    Return(Option<HExpr>),
    /// `abort(code)`
    Abort(u32),
    /// An expression for its effects.
    Expr(HExpr),
}

/// A checked expression and its type.
#[derive(Clone, Debug)]
pub struct HExpr {
    /// What it computes.
    pub kind: HExprKind,
    /// Its type.
    pub ty: Ty,
}

/// The expression kinds of the typed tree.
#[derive(Clone, Debug)]
pub enum HExprKind {
    /// An integer or boolean constant (the IR immediate).
    Const(i64),
    /// A local variable.
    Var(VarId),
    /// Read memory.
    Load(HPlace),
    /// Arithmetic, bitwise, shift or comparison (`&&`/`||` are separate).
    Binary(BinOp, Box<HExpr>, Box<HExpr>),
    /// `-e`
    Neg(Box<HExpr>),
    /// `!e`
    Not(Box<HExpr>),
    /// `a && b`
    And(Box<HExpr>, Box<HExpr>),
    /// `a || b`
    Or(Box<HExpr>, Box<HExpr>),
    /// `e as T` (from the operand's type to the expression's).
    Cast(Box<HExpr>),
    /// `rotl(x, n)` (true) or `rotr(x, n)` (false).
    Rotate(bool, Box<HExpr>, Box<HExpr>),
    /// A call of function `k`.
    Call(usize, Vec<HExpr>),
    /// A call of import `k`.
    CallImport(usize, Vec<HExpr>),
    /// Stands in for an expression that failed to check; never reaches lowering.
    Error,
}

impl HExpr {
    fn error() -> HExpr {
        HExpr { kind: HExprKind::Error, ty: Ty::Error }
    }

    fn konst(v: i64, ty: Ty) -> HExpr {
        HExpr { kind: HExprKind::Const(v), ty }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker

#[derive(Clone, Copy, Debug)]
enum Global {
    Scalar { offset: u32, ty: Ty },
    Array { offset: u32, elem: Ty, len: u32 },
}

#[derive(Clone, Debug)]
struct FnSig {
    index: usize,
    params: Vec<Ty>,
    ret: Ty,
    span: Span,
}

#[derive(Clone, Copy, Debug)]
struct Local {
    id: VarId,
    mutable: bool,
    span: Span,
}

/// Options that change what the checker accepts.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    /// Let calls to callables the ABI forbids here through (still reported as warnings), so
    /// that the IR reaches the verifier, which then rejects it as the kernel's loader would.
    pub defer_import_rules: bool,
}

struct Checker<'d> {
    diags: &'d mut Diagnostics,
    opts: CheckOptions,
    point: Option<&'static GraftPoint>,
    consts: HashMap<String, (Ty, i64, Span)>,
    globals: HashMap<String, (Global, Span)>,
    buffers: HashMap<String, (u32, &'static abi::RegionSpec, Span)>,
    fns: HashMap<String, FnSig>,
    imports: Vec<&'static Callable>,
    // Per function:
    scopes: Vec<HashMap<String, Local>>,
    vars: Vec<Ty>,
    ret: Ty,
    loops: usize,
}

/// Check a parsed file. Returns the program if no error was found.
pub fn check(items: &[Item], diags: &mut Diagnostics, opts: CheckOptions) -> Option<Program> {
    let mut c = Checker {
        diags,
        opts,
        point: None,
        consts: HashMap::new(),
        globals: HashMap::new(),
        buffers: HashMap::new(),
        fns: HashMap::new(),
        imports: Vec::new(),
        scopes: Vec::new(),
        vars: Vec::new(),
        ret: Ty::Unit,
        loops: 0,
    };
    c.program(items)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if close enough to be a likely typo.
fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}

impl Checker<'_> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn program(&mut self, items: &[Item]) -> Option<Program> {
        let mut graft: Option<&FnDecl> = None;
        let mut fuel: Option<(u64, Span)> = None;
        let mut data_size: Option<(u64, Span)> = None;
        let mut data: Vec<u8> = Vec::new();

        // The graft declaration first: buffers and the point are visible everywhere.
        for item in items {
            if let Item::Graft(g) = item {
                if let Some(first) = graft {
                    self.err(
                        Diagnostic::error(g.name.span, "a file implements one graft point")
                            .label("second `graft` declaration")
                            .also(first.name.span, "first declared here")
                            .hint("put each graft in its own file"),
                    );
                } else {
                    graft = Some(g);
                }
            }
        }
        let Some(g) = graft else {
            // A graft item that failed to parse has been reported already.
            if self.diags.has_errors() {
                return None;
            }
            self.err(
                Diagnostic::error(Span::new(0, 0), "no `graft` declaration: which graft point does this file implement?")
                    .hint("declare it, e.g. `graft vm.pick_victim(cands: buffer, n: i32) -> i32 { ... }`; `graftc points` lists the points"),
            );
            return None;
        };
        self.graft_header(g);

        // Constants, globals and resources, in order (a constant must be declared before use).
        for item in items {
            match item {
                Item::Const { name, ty, value } => {
                    let ty = self.ty(ty);
                    if let Some(v) = self.const_value(value, ty, "a constant") {
                        self.declare_name(name);
                        self.consts.insert(name.name.clone(), (ty, v, name.span));
                    }
                }
                Item::Global { name, ty, init } => self.global(name, ty, init.as_ref(), &mut data),
                Item::Fuel(e) => {
                    if let Some(v) = self.const_value(e, Ty::I64, "the fuel per call") {
                        if v < 1 || v as u64 > graft_ir::limits::MAX_FUEL {
                            self.err(Diagnostic::error(e.span, format!("fuel must be between 1 and {}", graft_ir::limits::MAX_FUEL)).label("out of range"));
                        }
                        fuel = Some((v as u64, e.span));
                    }
                }
                Item::DataSize(e) => {
                    if let Some(v) = self.const_value(e, Ty::I64, "the data size") {
                        let max = u64::from(graft_ir::limits::MAX_DATA_SIZE);
                        if v < 8 || v as u64 > max || !(v as u64).is_power_of_two() {
                            self.err(Diagnostic::error(e.span, format!("data_size must be a power of two between 8 and {max}")).label("not allowed"));
                        } else {
                            data_size = Some((v as u64, e.span));
                        }
                    }
                }
                Item::Graft(_) | Item::Fn(_) => {}
            }
        }

        // Function signatures, so that calls may refer forward and recursively.
        let mut bodies: Vec<&FnDecl> = vec![g];
        for item in items {
            if let Item::Fn(f) = item {
                let params = f.params.iter().map(|p| self.value_ty(&p.ty)).collect();
                let ret = f.ret.as_ref().map_or(Ty::Unit, |t| self.value_ty(t));
                if f.name.name.len() > graft_ir::limits::MAX_NAME_LEN {
                    self.err(Diagnostic::error(f.name.span, format!("function names are at most {} bytes long", graft_ir::limits::MAX_NAME_LEN)).label("name too long"));
                }
                if f.params.len() > graft_ir::limits::MAX_PARAMS {
                    self.err(Diagnostic::error(f.name.span, format!("`{}` has {} parameters; at most {} are allowed", f.name.name, f.params.len(), graft_ir::limits::MAX_PARAMS)).label("too many parameters"));
                }
                if let Some(prev) = self.fns.get(&f.name.name) {
                    let prev = prev.span;
                    self.err(Diagnostic::error(f.name.span, format!("function `{}` is defined twice", f.name.name)).label("second definition").also(prev, "first defined here"));
                    continue;
                }
                self.declare_name(&f.name);
                self.fns.insert(f.name.name.clone(), FnSig { index: bodies.len(), params, ret, span: f.name.span });
                bodies.push(f);
            }
        }

        let mut functions = Vec::new();
        for (i, f) in bodies.iter().enumerate() {
            functions.push(self.function(f, i == 0));
        }

        let point = self.point?;
        let used = data.len() as u64;
        let size = match data_size {
            Some((n, span)) => {
                if n < used {
                    self.err(Diagnostic::error(span, format!("data_size {n} is smaller than the {used} bytes the globals need")).label("too small"));
                }
                n
            }
            None => used.max(8).next_power_of_two(),
        };
        if size > u64::from(graft_ir::limits::MAX_DATA_SIZE) {
            self.err(Diagnostic::error(Span::new(0, 0), format!("the globals need {used} bytes, more than the data region's limit of {} bytes", graft_ir::limits::MAX_DATA_SIZE)));
        }
        // Trailing zeros need not travel in the blob: the region starts zeroed.
        while data.last() == Some(&0) {
            data.pop();
        }
        if self.diags.has_errors() {
            return None;
        }
        Some(Program {
            point,
            fuel: fuel.map_or(DEFAULT_FUEL, |f| f.0),
            data_size: size as u32,
            data,
            functions,
            imports: std::mem::take(&mut self.imports),
        })
    }

    /// Report a top-level name that clashes with another one.
    fn declare_name(&mut self, name: &Ident) {
        let prev = self
            .consts
            .get(&name.name)
            .map(|c| c.2)
            .or_else(|| self.globals.get(&name.name).map(|g| g.1))
            .or_else(|| self.buffers.get(&name.name).map(|b| b.2))
            .or_else(|| self.fns.get(&name.name).map(|f| f.span));
        if let Some(prev) = prev {
            self.err(
                Diagnostic::error(name.span, format!("`{}` is already defined", name.name))
                    .label("redefined here")
                    .also(prev, "first defined here"),
            );
        }
    }

    fn graft_header(&mut self, g: &FnDecl) {
        let Some(point) = abi::graft_point(&g.name.name) else {
            let mut d = Diagnostic::error(g.name.span, format!("unknown graft point `{}`", g.name.name)).label("not in the graft ABI");
            if let Some(n) = nearest(&g.name.name, abi::GRAFT_POINTS.iter().map(|p| p.name)) {
                d = d.hint(format!("did you mean `{n}`?"));
            }
            let all: Vec<&str> = abi::GRAFT_POINTS.iter().map(|p| p.name).collect();
            self.err(d.note(format!("the graft points are: {}", all.join(", "))));
            return;
        };
        self.point = Some(point);
        let expected = point_signature(point);
        let mut values = 0usize;
        let mut regions = 0usize;
        for p in &g.params {
            let is_buffer = matches!(&p.ty, TypeExpr::Named(i) if i.name == "buffer");
            if is_buffer {
                match point.regions.get(regions) {
                    Some(spec) => {
                        self.declare_name(&p.name);
                        self.buffers.insert(p.name.name.clone(), (regions as u32 + 1, spec, p.name.span));
                    }
                    None => self.err(
                        Diagnostic::error(p.name.span, format!("`{}` passes in {} buffer(s); this is one too many", point.name, point.regions.len()))
                            .label("extra buffer")
                            .note(format!("expected: {expected}")),
                    ),
                }
                regions += 1;
            } else {
                let ty = self.value_ty(&p.ty);
                match point.params.get(values) {
                    Some(want) if !ty.fits(Ty::from_ir(want.ty)) && !(ty.is_int() && want.ty.is_int() && ty.ir() == Some(want.ty)) => {
                        self.err(
                            Diagnostic::error(p.ty.span(), format!("parameter `{}` of `{}` is `{}`, not `{ty}`", want.name, point.name, Ty::from_ir(want.ty)))
                                .label("wrong type")
                                .note(format!("expected: {expected}")),
                        );
                    }
                    Some(_) => {}
                    None => self.err(
                        Diagnostic::error(p.name.span, format!("`{}` has {} value parameter(s); this is one too many", point.name, point.params.len()))
                            .label("extra parameter")
                            .note(format!("expected: {expected}")),
                    ),
                }
                values += 1;
            }
        }
        if values < point.params.len() || regions < point.regions.len() {
            let missing: Vec<String> = point.params[values.min(point.params.len())..]
                .iter()
                .map(|p| format!("{}: {}", p.name, Ty::from_ir(p.ty)))
                .chain(point.regions[regions.min(point.regions.len())..].iter().map(|r| format!("{}: buffer", r.name)))
                .collect();
            self.err(
                Diagnostic::error(g.name.span, format!("the graft declaration of `{}` is missing {}", point.name, missing.join(", ")))
                    .label("incomplete parameter list")
                    .note(format!("expected: {expected}")),
            );
        }
        match &g.ret {
            Some(t) => {
                let ty = self.value_ty(t);
                if ty.ir() != Some(point.ret) && ty != Ty::Error {
                    self.err(Diagnostic::error(t.span(), format!("`{}` returns `{}`", point.name, Ty::from_ir(point.ret))).label(format!("found `{ty}`")));
                }
            }
            None => self.err(
                Diagnostic::error(g.name.span, format!("`{}` returns `{}`", point.name, Ty::from_ir(point.ret)))
                    .label("no return type declared")
                    .hint(format!("add `-> {}` after the parameters", Ty::from_ir(point.ret))),
            ),
        }
    }

    fn ty(&mut self, t: &TypeExpr) -> Ty {
        match t {
            TypeExpr::Named(i) => match Ty::from_name(&i.name) {
                Some(ty) => ty,
                None => {
                    let mut d = Diagnostic::error(i.span, format!("unknown type `{}`", i.name)).label("not a type");
                    if i.name == "buffer" {
                        d = d.note("`buffer` is only allowed in the parameter list of the `graft` declaration");
                    } else if let Some(n) = nearest(&i.name, ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool", "page", "thread", "file", "lock"].into_iter()) {
                        d = d.hint(format!("did you mean `{n}`?"));
                    }
                    self.err(d);
                    Ty::Error
                }
            },
            TypeExpr::Array(_, _, span) => {
                self.err(Diagnostic::error(*span, "an array type is only allowed for a `global`").label("array type here").note("arrays live in the graft's data region; declare one with `global name: [T; N];`"));
                Ty::Error
            }
        }
    }

    /// A type for a value (parameter, return): the same as `ty`.
    fn value_ty(&mut self, t: &TypeExpr) -> Ty {
        self.ty(t)
    }

    fn const_value(&mut self, e: &Expr, ty: Ty, what: &str) -> Option<i64> {
        let saved = std::mem::take(&mut self.scopes);
        let h = self.expr(e, Some(ty));
        self.scopes = saved;
        if !h.ty.fits(ty) {
            self.err(Diagnostic::error(e.span, format!("{what} must be `{ty}`, found `{}`", h.ty)).label("wrong type"));
            return None;
        }
        if h.ty == Ty::Error {
            return None;
        }
        match fold(&h) {
            Some(v) => Some(v),
            None => {
                self.err(Diagnostic::error(e.span, format!("{what} must be a constant expression")).label("not constant").note("constants are literals, other constants, and arithmetic on them"));
                None
            }
        }
    }

    fn global(&mut self, name: &Ident, ty: &TypeExpr, init: Option<&Expr>, data: &mut Vec<u8>) {
        let (elem, len) = match ty {
            TypeExpr::Array(elem, n, span) => {
                let e = self.ty(elem);
                if *n == 0 || *n > u64::from(graft_ir::limits::MAX_DATA_SIZE) {
                    self.err(Diagnostic::error(*span, "array length must be between 1 and the data region's limit").label("bad length"));
                    return;
                }
                (e, Some(*n as u32))
            }
            t => (self.ty(t), None),
        };
        if let Ty::Handle(_) = elem {
            self.err(
                Diagnostic::error(ty.span(), "a handle cannot be stored in the data region")
                    .label("handle type")
                    .note("handles are never loaded or stored, so a graft cannot forge or keep one across calls"),
            );
            return;
        }
        if elem == Ty::Error {
            return;
        }
        let size = elem.size();
        let count = len.unwrap_or(1);
        // Align each global to its element size, so that records read naturally in dumps.
        while !data.len().is_multiple_of(size as usize) {
            data.push(0);
        }
        let offset = data.len() as u32;
        let Some(total) = (count as usize).checked_mul(size as usize).filter(|&t| offset as usize + t <= graft_ir::limits::MAX_DATA_SIZE as usize) else {
            self.err(Diagnostic::error(ty.span(), "the globals do not fit in the data region's limit").label("too large"));
            return;
        };
        let mut values = vec![0i64; count as usize];
        match (init, len) {
            (None, _) => {}
            (Some(e), None) => {
                if let Some(v) = self.const_value(e, elem, "a global's initial value") {
                    values[0] = v;
                }
            }
            (Some(e), Some(n)) => match &e.kind {
                ExprKind::ArrayLit(elems) => {
                    if elems.len() as u64 > u64::from(n) {
                        self.err(Diagnostic::error(e.span, format!("{} initial values for an array of {n}", elems.len())).label("too many values"));
                    }
                    for (slot, x) in values.iter_mut().zip(elems) {
                        if let Some(v) = self.const_value(x, elem, "an array element") {
                            *slot = v;
                        }
                    }
                }
                ExprKind::ArrayRepeat(x, k) => {
                    let v = self.const_value(x, elem, "an array element");
                    if let Some(k) = self.const_value(k, Ty::I64, "a repeat count")
                        && k != i64::from(n) {
                            self.err(Diagnostic::error(e.span, format!("`[x; {k}]` initialises an array of {n}")).label("length mismatch"));
                        }
                    values.iter_mut().for_each(|s| *s = v.unwrap_or(0));
                }
                _ => self.err(
                    Diagnostic::error(e.span, "an array is initialised with `[a, b, ...]` or `[x; N]`")
                        .label("not an array initialiser"),
                ),
            },
        }
        for v in values {
            data.extend_from_slice(&v.to_le_bytes()[..size as usize]);
        }
        let _ = total;
        self.declare_name(name);
        let g = match len {
            Some(len) => Global::Array { offset, elem, len },
            None => Global::Scalar { offset, ty: elem },
        };
        self.globals.insert(name.name.clone(), (g, name.span));
    }

    // ---- functions and statements

    fn new_var(&mut self, name: &Ident, ty: Ty, mutable: bool) -> VarId {
        let id = self.vars.len();
        self.vars.push(ty);
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.name.clone(), Local { id, mutable, span: name.span });
        }
        id
    }

    fn temp(&mut self, ty: Ty) -> VarId {
        self.vars.push(ty);
        self.vars.len() - 1
    }

    fn lookup(&self, name: &str) -> Option<Local> {
        self.scopes.iter().rev().find_map(|s| s.get(name).copied())
    }

    fn function(&mut self, f: &FnDecl, is_graft: bool) -> HFunc {
        self.vars.clear();
        self.scopes = vec![HashMap::new()];
        self.loops = 0;
        let mut params = Vec::new();
        for p in &f.params {
            if is_graft && matches!(&p.ty, TypeExpr::Named(i) if i.name == "buffer") {
                continue;
            }
            let ty = if is_graft { self.value_ty_quiet(&p.ty) } else { self.fns.get(&f.name.name).and_then(|s| s.params.get(params.len()).copied()).unwrap_or(Ty::Error) };
            if let Some(prev) = self.scopes[0].get(&p.name.name) {
                let prev = prev.span;
                self.err(Diagnostic::error(p.name.span, format!("parameter `{}` is declared twice", p.name.name)).label("again here").also(prev, "first here"));
            }
            self.new_var(&p.name, ty, false);
            params.push(ty);
        }
        self.ret = if is_graft {
            self.point.map_or(Ty::Error, |p| Ty::from_ir(p.ret))
        } else {
            self.fns.get(&f.name.name).map_or(Ty::Error, |s| s.ret)
        };
        let body = self.block(&f.body);
        if self.ret != Ty::Unit && !diverges(&f.body) {
            let end = Span::new(f.body.span.end.saturating_sub(1), f.body.span.end);
            self.err(
                Diagnostic::error(end, format!("`{}` can reach its end without returning a `{}`", f.name.name, self.ret))
                    .label("control reaches here")
                    .hint("end every path with `return ...;` (or `abort(code);`)"),
            );
        }
        HFunc { name: f.name.name.clone(), params, ret: self.ret, vars: std::mem::take(&mut self.vars), body }
    }

    /// The type of a graft parameter, without reporting again (the header check did).
    fn value_ty_quiet(&self, t: &TypeExpr) -> Ty {
        match t {
            TypeExpr::Named(i) => Ty::from_name(&i.name).unwrap_or(Ty::Error),
            TypeExpr::Array(..) => Ty::Error,
        }
    }

    fn block(&mut self, b: &Block) -> Vec<HStmt> {
        self.scopes.push(HashMap::new());
        let mut out = Vec::new();
        let mut dead = false;
        for s in &b.stmts {
            if dead {
                self.diags.push(Diagnostic::warning(s.span, "unreachable statement").label("never runs"));
                dead = false;
            }
            self.stmt(&s.kind, s.span, &mut out);
            if matches!(s.kind, StmtKind::Return(_) | StmtKind::Abort(_) | StmtKind::Break | StmtKind::Continue) {
                dead = true;
            }
        }
        self.scopes.pop();
        out
    }

    fn stmt(&mut self, s: &StmtKind, span: Span, out: &mut Vec<HStmt>) {
        match s {
            StmtKind::Let { name, mutable, ty, init } => {
                let want = ty.as_ref().map(|t| self.ty(t));
                let h = self.expr(init, want);
                let ty = match want {
                    Some(w) => {
                        self.expect(&h, w, init.span);
                        w
                    }
                    None => h.ty,
                };
                if ty == Ty::Unit {
                    self.err(Diagnostic::error(init.span, "this call returns nothing").label("no value to bind"));
                }
                let id = self.new_var(name, ty, *mutable);
                out.push(HStmt::Set(id, h));
            }
            StmtKind::Assign { target, op, value } => self.assign(target, *op, value, out),
            StmtKind::If { cond, then, els } => {
                let before = self.vars.len();
                let c = self.cond(cond);
                let t = self.block(then);
                let e = els.as_ref().map(|b| self.block(b)).unwrap_or_default();
                self.join_limit(before, &[&t, &e], 0, Span::new(span.start, span.start + 2), "`if`");
                out.push(HStmt::If(c, t, e));
            }
            StmtKind::While { cond, body } => {
                let before = self.vars.len();
                let c = self.cond(cond);
                self.loops += 1;
                let b = self.block(body);
                self.loops -= 1;
                self.join_limit(before, &[&b], 0, Span::new(span.start, span.start + 5), "loop");
                out.push(HStmt::While(c, b));
            }
            StmtKind::For { var, start, end, body } => {
                let (s, e) = self.operands(start, end, None);
                let ty = if s.ty == Ty::Error { e.ty } else { s.ty };
                if !ty.is_int() {
                    self.err(Diagnostic::error(start.span.to(end.span), format!("a `for` range is over integers, not `{ty}`")).label("not an integer range"));
                }
                self.scopes.push(HashMap::new());
                let before = self.vars.len();
                let end_var = self.temp(ty);
                let v = self.new_var(var, ty, false);
                self.loops += 1;
                let b = self.block(body);
                self.loops -= 1;
                self.join_limit(before, &[&b], 1, Span::new(span.start, span.start + 3), "loop");
                self.scopes.pop();
                out.push(HStmt::For { var: v, end_var, start: s, end: e, body: b });
            }
            StmtKind::Break | StmtKind::Continue => {
                let word = if matches!(s, StmtKind::Break) { "break" } else { "continue" };
                if self.loops == 0 {
                    self.err(Diagnostic::error(span, format!("`{word}` outside a loop")).label("not inside `while` or `for`"));
                }
                out.push(if matches!(s, StmtKind::Break) { HStmt::Break } else { HStmt::Continue });
            }
            StmtKind::Return(value) => {
                let ret = self.ret;
                match (value, ret) {
                    (None, Ty::Unit) => out.push(HStmt::Return(None)),
                    (None, _) => {
                        self.err(Diagnostic::error(span, format!("this function returns `{ret}`")).label("`return` without a value").hint(format!("write `return <{ret} value>;`")));
                    }
                    (Some(e), Ty::Unit) => {
                        self.err(Diagnostic::error(e.span, "this function returns nothing").label("unexpected value").hint("declare a return type with `-> T`"));
                    }
                    (Some(e), _) => {
                        let h = self.expr(e, Some(ret));
                        self.expect(&h, ret, e.span);
                        out.push(HStmt::Return(Some(h)));
                    }
                }
            }
            StmtKind::Abort(code) => {
                if let Some(v) = self.const_value(code, Ty::Int { bits: 32, signed: false }, "an abort code") {
                    out.push(HStmt::Abort(v as u32));
                }
            }
            StmtKind::Expr(e) => {
                let h = self.expr(e, None);
                out.push(HStmt::Expr(h));
            }
            StmtKind::Error => {}
            StmtKind::Block(b) => {
                let inner = self.block(b);
                out.push(HStmt::If(HExpr::konst(1, Ty::Bool), inner, Vec::new()));
            }
        }
    }

    /// Variables assigned inside a construct and declared before it become parameters of a
    /// join block, and the IR caps block parameters; report the construct if it needs more.
    fn join_limit(&mut self, declared_before: usize, parts: &[&[HStmt]], extra: usize, span: Span, what: &str) {
        let mut set = std::collections::BTreeSet::new();
        for p in parts {
            crate::lower::assigned(p, &mut set);
        }
        let n = set.range(..declared_before).count() + extra;
        if n > graft_ir::limits::MAX_PARAMS {
            self.err(
                Diagnostic::error(span, format!("this {what} changes {n} variables declared outside it; at most {} are allowed", graft_ir::limits::MAX_PARAMS))
                    .label("too many variables carried across")
                    .hint("keep some of them in a global array, or split the work into functions"),
            );
        }
    }

    fn cond(&mut self, e: &Expr) -> HExpr {
        let h = self.expr(e, Some(Ty::Bool));
        if !h.ty.fits(Ty::Bool) {
            let mut d = Diagnostic::error(e.span, format!("a condition must be `bool`, found `{}`", h.ty)).label("not a bool");
            if h.ty.is_int() {
                d = d.hint("compare explicitly, e.g. `x != 0`");
            }
            self.err(d);
        }
        h
    }

    fn expect(&mut self, h: &HExpr, want: Ty, span: Span) {
        if !h.ty.fits(want) {
            let mut d = Diagnostic::error(span, format!("expected `{want}`, found `{}`", h.ty)).label(format!("this is `{}`", h.ty));
            if h.ty.is_int() && want.is_int() {
                d = d.hint(format!("convert explicitly with `as {want}`"));
            }
            self.err(d);
        }
    }

    fn assign(&mut self, target: &Expr, op: Option<BinOp>, value: &Expr, out: &mut Vec<HStmt>) {
        match &target.kind {
            ExprKind::Name(id) => {
                if let Some(local) = self.lookup(&id.name) {
                    if !local.mutable {
                        self.err(
                            Diagnostic::error(target.span, format!("cannot assign to `{}`: it is not mutable", id.name))
                                .label("assignment to an immutable variable")
                                .also(local.span, "declared here")
                                .hint(format!("declare it with `let mut {}`", id.name)),
                        );
                    }
                    let ty = self.vars.get(local.id).copied().unwrap_or(Ty::Error);
                    let cur = HExpr { kind: HExprKind::Var(local.id), ty };
                    let v = self.rhs(cur, op, value, ty);
                    out.push(HStmt::Set(local.id, v));
                    return;
                }
                if let Some((Global::Scalar { offset, ty }, _)) = self.globals.get(&id.name).copied() {
                    let place = HPlace { region: 0, index: None, scale: 1, imm: offset, ty, bound: None };
                    let cur = HExpr { kind: HExprKind::Load(place.clone()), ty };
                    let v = self.rhs(cur, op, value, ty);
                    out.push(HStmt::Store(place, v));
                    return;
                }
                if self.consts.contains_key(&id.name) {
                    self.err(Diagnostic::error(target.span, format!("cannot assign to constant `{}`", id.name)).label("a constant").hint("use a `global` for a value that changes"));
                } else if self.globals.contains_key(&id.name) || self.buffers.contains_key(&id.name) {
                    self.err(Diagnostic::error(target.span, format!("cannot assign to `{}` as a whole", id.name)).label("assign to an element instead"));
                } else {
                    self.unknown_name(id);
                }
                self.expr(value, None);
            }
            ExprKind::Index(base, index, view) => {
                let Some((place, writable)) = self.place(base, index, view.as_ref(), target.span) else {
                    self.expr(value, None);
                    return;
                };
                if let Some((region, name)) = writable {
                    self.err(
                        Diagnostic::error(target.span, format!("buffer `{name}` is read-only at this graft point"))
                            .label("store to a read-only buffer")
                            .note(format!("region r{region} may only be read; a store would be rejected by the verifier")),
                    );
                }
                let ty = place.ty;
                // Evaluate a dynamic offset once, even for `x[i] += v`.
                let place = match place.index {
                    Some(off) if op.is_some() => {
                        let t = self.temp(Ty::I64);
                        out.push(HStmt::Set(t, *off));
                        HPlace { index: Some(Box::new(HExpr { kind: HExprKind::Var(t), ty: Ty::I64 })), ..place }
                    }
                    _ => place,
                };
                let cur = HExpr { kind: HExprKind::Load(place.clone()), ty };
                let v = self.rhs(cur, op, value, ty);
                out.push(HStmt::Store(place, v));
            }
            _ => {
                self.err(
                    Diagnostic::error(target.span, "cannot assign to this expression")
                        .label("not a place")
                        .note("assignable places are `let mut` variables, globals, global array elements and buffer elements"),
                );
                self.expr(value, None);
            }
        }
    }

    fn rhs(&mut self, cur: HExpr, op: Option<BinOp>, value: &Expr, ty: Ty) -> HExpr {
        let v = self.expr(value, Some(ty));
        self.expect(&v, ty, value.span);
        match op {
            None => v,
            Some(op) => {
                if !ty.is_int() {
                    self.err(Diagnostic::error(value.span, format!("`{}=` needs an integer, not `{ty}`", op.symbol())).label("here"));
                }
                HExpr { kind: HExprKind::Binary(op, Box::new(cur), Box::new(v)), ty }
            }
        }
    }

    /// Resolve `base[index]` to a memory place; also says, for a read-only buffer, its region
    /// and name (so that a store can be reported).
    fn place(&mut self, base: &Expr, index: &Expr, view: Option<&Ident>, span: Span) -> Option<(HPlace, Option<(u32, String)>)> {
        let ExprKind::Name(id) = &base.kind else {
            self.expr(base, None);
            self.expr(index, None);
            self.err(Diagnostic::error(base.span, "only global arrays and buffers can be indexed").label("not an array or buffer"));
            return None;
        };
        let idx = self.expr(index, None);
        if !idx.ty.is_int() {
            self.err(Diagnostic::error(index.span, format!("an index must be an integer, found `{}`", idx.ty)).label("not an integer"));
        }
        let idx64 = widen_to_i64(idx);
        if let Some((region, spec, _)) = self.buffers.get(&id.name).copied() {
            let ty = match view {
                None => Ty::Int { bits: 8, signed: false },
                Some(v) => match Ty::from_name(&v.name) {
                    Some(t @ Ty::Int { .. }) => t,
                    _ => {
                        self.err(
                            Diagnostic::error(v.span, format!("`.{}` is not an integer view", v.name))
                                .label("unknown view")
                                .hint("views are `.u8 .u16 .u32 .u64 .i8 .i16 .i32 .i64`: `buf[off].u32` reads the little-endian u32 at byte `off`"),
                        );
                        Ty::Error
                    }
                },
            };
            let (offset, imm) = split_offset(idx64);
            let ro = (!spec.rights.writable()).then(|| (region, id.name.clone()));
            return Some((HPlace { region, index: offset, scale: 1, imm, ty, bound: None }, ro));
        }
        if let Some((g, _)) = self.globals.get(&id.name).copied() {
            let Global::Array { offset, elem, len } = g else {
                self.err(Diagnostic::error(base.span, format!("global `{}` is a scalar, not an array", id.name)).label("cannot be indexed"));
                return None;
            };
            if let Some(v) = view {
                self.err(Diagnostic::error(v.span, "views (`.u32` ...) apply to buffers only").label("on a global array").note(format!("the elements of `{}` are `{elem}`", id.name)));
            }
            let size = elem.size();
            if let Some(k) = fold(&idx64) {
                if k < 0 || k >= i64::from(len) {
                    self.err(Diagnostic::error(index.span, format!("index {k} is out of range for `{}` of length {len}", id.name)).label("out of range"));
                    return None;
                }
                return Some((HPlace { region: 0, index: None, scale: 1, imm: offset + k as u32 * size, ty: elem, bound: None }, None));
            }
            return Some((HPlace { region: 0, index: Some(Box::new(idx64)), scale: size, imm: offset, ty: elem, bound: Some(len) }, None));
        }
        let _ = span;
        if self.lookup(&id.name).is_some() || self.consts.contains_key(&id.name) {
            self.err(Diagnostic::error(base.span, format!("`{}` is not an array or a buffer", id.name)).label("cannot be indexed"));
        } else {
            self.unknown_name(id);
        }
        None
    }

    fn unknown_name(&mut self, id: &Ident) {
        let mut names: Vec<String> = self.scopes.iter().flat_map(|s| s.keys().cloned()).collect();
        names.extend(self.consts.keys().cloned());
        names.extend(self.globals.keys().cloned());
        names.extend(self.buffers.keys().cloned());
        let mut d = Diagnostic::error(id.span, format!("cannot find `{}` in this scope", id.name)).label("not found");
        if let Some(n) = nearest(&id.name, names.iter().map(String::as_str)) {
            d = d.hint(format!("did you mean `{n}`?"));
        }
        self.err(d);
    }

    // ---- expressions

    /// Check two operands that must share a type: an untyped literal takes the other's type.
    fn operands(&mut self, a: &Expr, b: &Expr, expected: Option<Ty>) -> (HExpr, HExpr) {
        if is_untyped_literal(a) && !is_untyped_literal(b) {
            let hb = self.expr(b, expected);
            let ha = self.expr(a, Some(hb.ty).filter(|t| t.is_int()).or(expected));
            (ha, hb)
        } else {
            let ha = self.expr(a, expected);
            let hb = self.expr(b, Some(ha.ty).filter(|t| *t != Ty::Error).or(expected));
            (ha, hb)
        }
    }

    fn expr(&mut self, e: &Expr, expected: Option<Ty>) -> HExpr {
        match &e.kind {
            ExprKind::Int(v, hex, suffix) => {
                let ty = match suffix.as_deref().and_then(Ty::from_name) {
                    Some(t) => t,
                    None => match expected {
                        Some(t @ Ty::Int { .. }) => t,
                        _ => Ty::I32,
                    },
                };
                self.literal(*v, false, *hex, ty, e.span)
            }
            ExprKind::Bool(b) => HExpr::konst(i64::from(*b), Ty::Bool),
            ExprKind::Name(id) => self.name(id),
            ExprKind::Unary(UnOp::Neg, inner) => {
                if let ExprKind::Int(v, hex, suffix) = &inner.kind {
                    let ty = match suffix.as_deref().and_then(Ty::from_name) {
                        Some(t) => t,
                        None => match expected {
                            Some(t @ Ty::Int { .. }) => t,
                            _ => Ty::I32,
                        },
                    };
                    return self.literal(*v, true, *hex, ty, e.span);
                }
                let h = self.expr(inner, expected);
                match h.ty {
                    Ty::Int { signed: true, .. } | Ty::Error => HExpr { ty: h.ty, kind: HExprKind::Neg(Box::new(h)) },
                    t => {
                        self.err(Diagnostic::error(e.span, format!("cannot negate a `{t}`")).label("unary `-` needs a signed integer").hint("for wrapping negation of an unsigned value write `0 - x`"));
                        HExpr::error()
                    }
                }
            }
            ExprKind::Unary(UnOp::Not, inner) => {
                let h = self.expr(inner, expected);
                match h.ty {
                    Ty::Int { .. } | Ty::Bool | Ty::Error => HExpr { ty: h.ty, kind: HExprKind::Not(Box::new(h)) },
                    t => {
                        self.err(Diagnostic::error(e.span, format!("cannot apply `!` to a `{t}`")).label("needs `bool` or an integer"));
                        HExpr::error()
                    }
                }
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, expected, e.span),
            ExprKind::Cast(inner, t) => {
                let to = self.ty(t);
                let h = self.expr(inner, None);
                let ok = match (h.ty, to) {
                    (Ty::Error, _) | (_, Ty::Error) => true,
                    (Ty::Int { .. }, Ty::Int { .. }) | (Ty::Bool, Ty::Int { .. }) | (Ty::Bool, Ty::Bool) => true,
                    _ => false,
                };
                if !ok {
                    let mut d = Diagnostic::error(e.span, format!("cannot convert `{}` to `{to}`", h.ty)).label("invalid `as`");
                    if to == Ty::Bool {
                        d = d.hint("compare instead: `x != 0`");
                    } else if matches!(h.ty, Ty::Handle(_)) || matches!(to, Ty::Handle(_)) {
                        d = d.note("handles are opaque: they never turn into numbers or back");
                    }
                    self.err(d);
                    return HExpr::error();
                }
                HExpr { kind: HExprKind::Cast(Box::new(h)), ty: to }
            }
            ExprKind::Call(path, args) => self.call(path, args, e.span),
            ExprKind::Index(base, index, view) => match self.place(base, index, view.as_ref(), e.span) {
                Some((place, _)) => {
                    let ty = place.ty;
                    HExpr { kind: HExprKind::Load(place), ty }
                }
                None => HExpr::error(),
            },
            ExprKind::ArrayLit(_) | ExprKind::ArrayRepeat(..) => {
                self.err(Diagnostic::error(e.span, "array values exist only as `global` initialisers").label("array literal here").note("arrays live in the data region: declare `global a: [T; N] = [...];`"));
                HExpr::error()
            }
            ExprKind::Error => HExpr::error(),
        }
    }

    fn literal(&mut self, v: u64, neg: bool, hex: bool, ty: Ty, span: Span) -> HExpr {
        let Ty::Int { bits, signed } = ty else {
            self.err(Diagnostic::error(span, format!("expected `{ty}`, found an integer literal")).label("integer literal"));
            return HExpr::error();
        };
        let bits = u32::from(bits);
        let umax: u128 = (1u128 << bits) - 1;
        let smax: u128 = (1u128 << (bits - 1)) - 1;
        let v128 = u128::from(v);
        let fits = match (signed, neg) {
            (false, false) => v128 <= umax,
            (false, true) => false,
            (true, true) => v128 <= smax + 1,
            // A hex or binary literal may spell the whole bit pattern of a signed type.
            (true, false) => v128 <= smax || (hex && v128 <= umax),
        };
        if !fits {
            let shown = if neg { format!("-{v}") } else { v.to_string() };
            let mut d = Diagnostic::error(span, format!("literal `{shown}` does not fit in `{ty}`")).label(format!("out of range for `{ty}`"));
            if neg && !signed {
                d = d.note("unsigned types have no negative values");
            } else {
                d = d.hint("use a wider type, or a type suffix such as `u64`");
            }
            self.err(d);
            return HExpr::error();
        }
        // Keep constants in one canonical form per view (sign-extended for signed types), so
        // that folding and range checks see `0xFFFF_FFFF: i32` as the -1 it is.
        let raw = if neg { (v as i64).wrapping_neg() } else { v as i64 };
        let shift = 64 - bits;
        let imm = if signed { (raw << shift) >> shift } else { raw };
        HExpr::konst(imm, ty)
    }

    fn name(&mut self, id: &Ident) -> HExpr {
        if let Some(local) = self.lookup(&id.name) {
            let ty = self.vars.get(local.id).copied().unwrap_or(Ty::Error);
            return HExpr { kind: HExprKind::Var(local.id), ty };
        }
        if let Some((ty, v, _)) = self.consts.get(&id.name).copied() {
            return HExpr::konst(v, ty);
        }
        if let Some((g, _)) = self.globals.get(&id.name).copied() {
            return match g {
                Global::Scalar { offset, ty } => HExpr { kind: HExprKind::Load(HPlace { region: 0, index: None, scale: 1, imm: offset, ty, bound: None }), ty },
                Global::Array { len, .. } => {
                    self.err(Diagnostic::error(id.span, format!("`{}` is an array of {len}; use one element", id.name)).label("array used as a value").hint(format!("index it: `{}[i]`", id.name)));
                    HExpr::error()
                }
            };
        }
        if self.buffers.contains_key(&id.name) {
            self.err(
                Diagnostic::error(id.span, format!("`{}` is a buffer, not a value", id.name))
                    .label("buffer used as a value")
                    .hint(format!("read from it: `{0}[off]` (a byte) or `{0}[off].u32` (the u32 at byte `off`)", id.name)),
            );
            return HExpr::error();
        }
        self.unknown_name(id);
        HExpr::error()
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, expected: Option<Ty>, span: Span) -> HExpr {
        if matches!(op, BinOp::LogicAnd | BinOp::LogicOr) {
            let ha = self.cond(a);
            let hb = self.cond(b);
            let kind = if op == BinOp::LogicAnd { HExprKind::And(Box::new(ha), Box::new(hb)) } else { HExprKind::Or(Box::new(ha), Box::new(hb)) };
            return HExpr { kind, ty: Ty::Bool };
        }
        let operand_expect = if op.is_comparison() { None } else { expected.filter(|t| t.is_int()) };
        let (ha, hb) = self.operands(a, b, operand_expect);
        let (ta, tb) = (ha.ty, hb.ty);
        if ta == Ty::Error || tb == Ty::Error {
            return HExpr { kind: HExprKind::Error, ty: if op.is_comparison() { Ty::Bool } else { Ty::Error } };
        }
        if ta != tb {
            let mut d = Diagnostic::error(span, format!("mismatched types: `{ta}` {} `{tb}`", op.symbol()))
                .label("operands of different types")
                .also(a.span, format!("`{ta}`"))
                .also(b.span, format!("`{tb}`"));
            if ta.is_int() && tb.is_int() {
                d = d.hint(format!("convert one side with `as`: the right with `as {ta}`, or the left with `as {tb}`"));
            }
            self.err(d);
            return HExpr { kind: HExprKind::Error, ty: if op.is_comparison() { Ty::Bool } else { Ty::Error } };
        }
        let ok = match op {
            BinOp::Eq | BinOp::Ne => !matches!(ta, Ty::Unit),
            BinOp::And | BinOp::Or | BinOp::Xor => matches!(ta, Ty::Int { .. } | Ty::Bool),
            _ => matches!(ta, Ty::Int { .. }),
        };
        if !ok {
            let mut d = Diagnostic::error(span, format!("`{}` cannot be applied to `{ta}`", op.symbol())).label("unsupported operand type");
            if let Ty::Handle(_) = ta {
                d = d.note("handles can only be compared with `==` and `!=`");
            }
            self.err(d);
            return HExpr::error();
        }
        let ty = if op.is_comparison() { Ty::Bool } else { ta };
        HExpr { kind: HExprKind::Binary(op, Box::new(ha), Box::new(hb)), ty }
    }

    fn call(&mut self, path: &[Ident], args: &[Expr], span: Span) -> HExpr {
        let Some(first) = path.first() else { return HExpr::error() };
        if path.len() == 1 {
            let name = first.name.as_str();
            if name == "rotl" || name == "rotr" {
                if args.len() != 2 {
                    self.err(Diagnostic::error(span, format!("`{name}` takes 2 arguments (value, amount), found {}", args.len())).label("wrong argument count"));
                    return HExpr::error();
                }
                let (x, n) = self.operands(&args[0], &args[1], None);
                if x.ty != Ty::Error && (!x.ty.is_int() || !n.ty.fits(x.ty)) {
                    self.err(Diagnostic::error(span, format!("`{name}` rotates an integer by an amount of the same type, found `{}` and `{}`", x.ty, n.ty)).label("bad operands"));
                    return HExpr::error();
                }
                let ty = x.ty;
                return HExpr { kind: HExprKind::Rotate(name == "rotl", Box::new(x), Box::new(n)), ty };
            }
            let Some(sig) = self.fns.get(name).cloned() else {
                let mut d = Diagnostic::error(first.span, format!("cannot find function `{name}`")).label("not found");
                let mut names: Vec<&str> = self.fns.keys().map(String::as_str).collect();
                names.extend(["rotl", "rotr"]);
                if let Some(n) = nearest(name, names.into_iter()) {
                    d = d.hint(format!("did you mean `{n}`?"));
                } else if abi::CALLABLES.iter().any(|c| c.name.ends_with(&format!(".{name}"))) {
                    let full: Vec<&str> = abi::CALLABLES.iter().filter(|c| c.name.ends_with(&format!(".{name}"))).map(|c| c.name).collect();
                    d = d.hint(format!("kernel callables are called by their full name: `{}`", full.join("`, `")));
                }
                self.err(d);
                for a in args {
                    self.expr(a, None);
                }
                return HExpr::error();
            };
            let args = self.args(name, &sig.params, args, span);
            return HExpr { kind: HExprKind::Call(sig.index, args), ty: sig.ret };
        }
        let name = path.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(".");
        let pspan = first.span.to(path[path.len() - 1].span);
        let Some(c) = abi::callable(&name) else {
            let mut d = Diagnostic::error(pspan, format!("unknown kernel callable `{name}`")).label("not in the graft ABI");
            if let Some(n) = nearest(&name, abi::CALLABLES.iter().map(|c| c.name)) {
                d = d.hint(format!("did you mean `{n}`?"));
            }
            self.err(d.note("`graftc points` lists the callables each graft point allows"));
            for a in args {
                self.expr(a, None);
            }
            return HExpr::error();
        };
        if let Some(point) = self.point {
            let why = if !c.importable {
                Some(format!("`{name}` is kernel-only: no graft may import it"))
            } else if !point.allows(c.name) {
                Some(format!("graft point `{}` does not allow `{name}`", point.name))
            } else {
                None
            };
            if let Some(why) = why {
                let d = if self.opts.defer_import_rules { Diagnostic::warning(pspan, format!("forbidden call: {why}")) } else { Diagnostic::error(pspan, format!("forbidden call: {why}")) };
                self.err(
                    d.label("the kernel's verifier rejects this import (rule `imports`)")
                        .note(format!("`{}` may call: {}", point.name, point.callables.join(", "))),
                );
                if !self.opts.defer_import_rules {
                    for a in args {
                        self.expr(a, None);
                    }
                    return HExpr::error();
                }
            }
        }
        let params: Vec<Ty> = c.params.iter().map(|t| Ty::from_ir(*t)).collect();
        let args = self.args(&name, &params, args, span);
        let idx = match self.imports.iter().position(|i| i.id == c.id) {
            Some(i) => i,
            None => {
                self.imports.push(c);
                self.imports.len() - 1
            }
        };
        HExpr { kind: HExprKind::CallImport(idx, args), ty: c.ret.map_or(Ty::Unit, Ty::from_ir) }
    }

    fn args(&mut self, name: &str, params: &[Ty], args: &[Expr], span: Span) -> Vec<HExpr> {
        if params.len() != args.len() {
            let sig: Vec<String> = params.iter().map(Ty::to_string).collect();
            self.err(
                Diagnostic::error(span, format!("`{name}` takes {} argument(s), found {}", params.len(), args.len()))
                    .label("wrong argument count")
                    .note(format!("signature: {name}({})", sig.join(", "))),
            );
        }
        let mut out = Vec::new();
        for (i, a) in args.iter().enumerate() {
            let want = params.get(i).copied();
            let h = self.expr(a, want);
            if let Some(w) = want {
                self.expect(&h, w, a.span);
            }
            out.push(h);
        }
        out
    }
}

/// Text of a graft point's expected declaration, for notes.
pub fn point_signature(p: &GraftPoint) -> String {
    let mut parts: Vec<String> = p.regions.iter().map(|r| format!("{}: buffer", r.name)).collect();
    parts.extend(p.params.iter().map(|x| format!("{}: {}", x.name, Ty::from_ir(x.ty))));
    format!("graft {}({}) -> {}", p.name, parts.join(", "), Ty::from_ir(p.ret))
}

fn is_untyped_literal(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Int(_, _, None) => true,
        ExprKind::Unary(UnOp::Neg, inner) => is_untyped_literal(inner),
        _ => false,
    }
}

/// An index or offset as an i64 expression (signed sources sign-extend, so a negative index
/// becomes a huge unsigned offset and fails the bounds check).
fn widen_to_i64(h: HExpr) -> HExpr {
    match h.ty {
        Ty::Int { bits: 64, .. } => HExpr { ty: Ty::I64, ..h },
        Ty::Int { .. } | Ty::Bool => HExpr { kind: HExprKind::Cast(Box::new(h)), ty: Ty::I64 },
        _ => h,
    }
}

/// Split `e + constant` into a dynamic part and a static offset (the IR's `imm`).
fn split_offset(e: HExpr) -> (Option<Box<HExpr>>, u32) {
    let max = i64::from(graft_ir::limits::MAX_IMM_OFFSET);
    if let Some(k) = fold(&e)
        && (0..=max).contains(&k) {
            return (None, k as u32);
        }
    if let HExprKind::Binary(BinOp::Add, a, b) = &e.kind
        && let Some(k) = fold(b)
            && (0..=max).contains(&k) {
                return (Some(a.clone()), k as u32);
            }
    (Some(Box::new(e)), 0)
}

/// The value of a constant expression (as the IR immediate of its type), if it is one.
pub fn fold(e: &HExpr) -> Option<i64> {
    let (bits, signed) = match e.ty {
        Ty::Int { bits, signed } => (u32::from(bits), signed),
        Ty::Bool => (8, false),
        _ => return None,
    };
    let norm = |x: i64| -> i64 {
        let shift = 64 - bits;
        if signed { (x << shift) >> shift } else { ((x as u64) << shift >> shift) as i64 }
    };
    Some(match &e.kind {
        HExprKind::Const(v) => *v,
        HExprKind::Neg(a) => norm(fold(a)?.wrapping_neg()),
        HExprKind::Not(a) => {
            if e.ty == Ty::Bool { i64::from(fold(a)? == 0) } else { norm(!fold(a)?) }
        }
        HExprKind::Cast(a) => {
            let v = fold(a)?;
            norm(v)
        }
        HExprKind::Binary(op, a, b) => {
            let (x, y) = (fold(a)?, fold(b)?);
            let (ux, uy) = (x as u64, y as u64);
            match op {
                BinOp::Add => norm(x.wrapping_add(y)),
                BinOp::Sub => norm(x.wrapping_sub(y)),
                BinOp::Mul => norm(x.wrapping_mul(y)),
                BinOp::And => x & y,
                BinOp::Or => x | y,
                BinOp::Xor => x ^ y,
                BinOp::Shl => norm(x.wrapping_shl((y as u32) & (bits - 1))),
                // Division and the rest are left to run time, where their aborts are defined.
                _ => {
                    let _ = (ux, uy);
                    return None;
                }
            }
        }
        _ => return None,
    })
}

fn diverges(b: &Block) -> bool {
    b.stmts.iter().any(|s| stmt_diverges(&s.kind))
}

fn stmt_diverges(s: &StmtKind) -> bool {
    match s {
        // A statement that did not parse might have returned: do not pile on.
        StmtKind::Return(_) | StmtKind::Abort(_) | StmtKind::Error => true,
        StmtKind::If { then, els: Some(e), .. } => diverges(then) && diverges(e),
        StmtKind::Block(b) => diverges(b),
        StmtKind::While { cond, body } => matches!(cond.kind, ExprKind::Bool(true)) && !has_break(body),
        _ => false,
    }
}

fn has_break(b: &Block) -> bool {
    b.stmts.iter().any(|s| match &s.kind {
        StmtKind::Break => true,
        StmtKind::If { then, els, .. } => has_break(then) || els.as_ref().is_some_and(has_break),
        StmtKind::Block(b) => has_break(b),
        _ => false,
    })
}
