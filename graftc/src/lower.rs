//! Lowering: the typed tree to SSA graft IR, through graft-ir's builder.
//!
//! Variables become SSA values directly. Control flow is structured, so SSA construction
//! needs no dominance frontiers: at every join (after an `if`, at a loop header, at a loop
//! exit) the variables assigned inside the construct and defined before it become block
//! parameters, and each incoming edge passes its current values. Blocks are created only
//! when something jumps to them, so no empty (and unverifiable) block is ever left behind.
//!
//! Lowering does not fail on checked input; anything it cannot do is an internal error,
//! collected and reported by the driver as a compiler bug.

use std::collections::BTreeSet;

use graft_ir::builder::{FunctionBuilder, ModuleBuilder};
use graft_ir::{Block, FuncRef, ImportRef, IntCC, Module, Opcode, Region, Signature, Type, Value};

use crate::check::{fold, HExpr, HExprKind, HFunc, HPlace, HStmt, Program, Ty, VarId, ARRAY_INDEX_ABORT};
use crate::syntax::BinOp;

/// Lower a checked program. Internal errors (compiler bugs) are returned with the module.
pub fn lower(p: &Program) -> (Module, Vec<String>) {
    let mut mb = ModuleBuilder::new(p.point.name, p.data_size, p.fuel);
    mb.set_data(&p.data);
    for c in &p.imports {
        mb.import(c.name, c.signature());
    }
    let mut internal = Vec::new();
    let refs: Vec<FuncRef> = p
        .functions
        .iter()
        .map(|f| {
            let params: Vec<Type> = f.params.iter().map(|t| t.ir().unwrap_or(Type::I64)).collect();
            mb.declare_function(&f.name, Signature::new(&params, f.ret.ir()))
        })
        .collect();
    for (f, r) in p.functions.iter().zip(&refs) {
        let mut fb = mb.function(*r);
        let mut env = vec![None; f.vars.len()];
        for (i, v) in fb.params().into_iter().enumerate() {
            if let Some(slot) = env.get_mut(i) {
                *slot = Some(v);
            }
        }
        let mut l = Lowerer { fb: &mut fb, f, env, live: true, loops: Vec::new(), internal: &mut internal, params: Default::default(), ranges: Vec::new() };
        l.stmts(&f.body);
        if l.live {
            if f.ret == Ty::Unit {
                l.fb.ret(None);
            } else {
                l.internal.push(format!("function `{}` falls off its end without a return", f.name));
                l.fb.abort(0);
            }
        }
    }
    (mb.finish(), internal)
}

struct LoopCtx {
    /// Variables carried around the loop (block parameters of header, latch and exit).
    carried: Vec<VarId>,
    /// Where `continue` goes: the header (`while`) or the latch (`for`), created on demand.
    cont: Option<Block>,
    /// Whether `continue` goes to a latch (`for`) rather than straight to the header.
    has_latch: bool,
    header: Block,
    exit: Option<Block>,
}

struct Lowerer<'a, 'b, 'c> {
    fb: &'a mut FunctionBuilder<'b>,
    f: &'c HFunc,
    env: Vec<Option<Value>>,
    /// Whether the current block can be reached (false after `return`, `break`, ...).
    live: bool,
    loops: Vec<LoopCtx>,
    internal: &'a mut Vec<String>,
    params: std::collections::HashMap<Block, Vec<Value>>,
    /// Counters of the enclosing `for` loops that run over a constant range `lo..hi` with
    /// `0 <= lo` and that their body never assigns: `(counter, hi)`. Inside the body such a
    /// counter lies in `[0, hi)`.
    ranges: Vec<(VarId, i64)>,
}

/// Variables assigned (or defined) anywhere in `stmts`.
pub fn assigned(stmts: &[HStmt], out: &mut BTreeSet<VarId>) {
    for s in stmts {
        match s {
            HStmt::Set(v, _) => {
                out.insert(*v);
            }
            HStmt::If(_, a, b) => {
                assigned(a, out);
                assigned(b, out);
            }
            HStmt::While(_, b) => assigned(b, out),
            HStmt::For { var, end_var, body, .. } => {
                out.insert(*var);
                out.insert(*end_var);
                assigned(body, out);
            }
            _ => {}
        }
    }
}

impl Lowerer<'_, '_, '_> {
    fn var_ty(&self, v: VarId) -> Type {
        self.f.vars.get(v).and_then(|t| t.ir()).unwrap_or(Type::I64)
    }

    fn get(&mut self, v: VarId) -> Value {
        match self.env.get(v).copied().flatten() {
            Some(x) => x,
            None => {
                self.internal.push(format!("variable #{v} of `{}` used before definition", self.f.name));
                self.fb.iconst(self.var_ty(v), 0)
            }
        }
    }

    fn args(&mut self, vars: &[VarId]) -> Vec<Value> {
        vars.iter().map(|&v| self.get(v)).collect()
    }

    /// Variables assigned in `stmts` that already have a value here: the ones a join needs.
    fn carried(&self, parts: &[&[HStmt]]) -> Vec<VarId> {
        let mut set = BTreeSet::new();
        for p in parts {
            assigned(p, &mut set);
        }
        set.into_iter().filter(|&v| self.env.get(v).copied().flatten().is_some()).collect()
    }

    /// A block whose parameters are `vars`.
    fn join_block(&mut self, vars: &[VarId]) -> Block {
        let b = self.fb.create_block();
        let mut ps = Vec::new();
        for &v in vars {
            let ty = self.var_ty(v);
            ps.push(self.fb.append_block_param(b, ty));
        }
        self.params.insert(b, ps);
        b
    }

    /// Continue in `b`, whose parameters are the new values of `vars`.
    fn enter(&mut self, b: Block, vars: &[VarId]) {
        self.fb.switch_to_block(b);
        let params = self.block_params(b);
        for (&v, p) in vars.iter().zip(params) {
            if let Some(slot) = self.env.get_mut(v) {
                *slot = Some(p);
            }
        }
        self.live = true;
    }

    fn block_params(&self, b: Block) -> Vec<Value> {
        // The builder does not hand a block's parameters back, so join_block records them.
        self.params.get(&b).cloned().unwrap_or_default()
    }

    fn stmts(&mut self, stmts: &[HStmt]) {
        for s in stmts {
            if !self.live {
                return;
            }
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &HStmt) {
        match s {
            HStmt::Set(v, e) => {
                if let Some(x) = self.expr(e)
                    && let Some(slot) = self.env.get_mut(*v) {
                        *slot = Some(x);
                    }
            }
            HStmt::Store(place, e) => {
                let Some(x) = self.expr(e) else { return };
                let (region, off, imm) = self.address(place);
                self.fb.store(region, off, imm, x);
            }
            HStmt::If(c, t, e) => self.if_stmt(c, t, e),
            HStmt::While(c, body) => self.while_loop(c, body),
            HStmt::For { var, end_var, start, end, body } => self.for_loop(*var, *end_var, start, end, body),
            HStmt::Break => {
                let Some(ctx) = self.loops.last() else {
                    self.internal.push("`break` outside a loop".into());
                    return;
                };
                let carried = ctx.carried.clone();
                let exit = match ctx.exit {
                    Some(b) => b,
                    None => {
                        let b = self.join_block(&carried);
                        if let Some(ctx) = self.loops.last_mut() {
                            ctx.exit = Some(b);
                        }
                        b
                    }
                };
                let args = self.args(&carried);
                self.fb.jump(exit, &args);
                self.live = false;
            }
            HStmt::Continue => {
                let Some(ctx) = self.loops.last() else {
                    self.internal.push("`continue` outside a loop".into());
                    return;
                };
                let carried = ctx.carried.clone();
                let target = match (ctx.has_latch, ctx.cont) {
                    (false, _) => ctx.header,
                    (true, Some(b)) => b,
                    (true, None) => {
                        let b = self.join_block(&carried);
                        if let Some(ctx) = self.loops.last_mut() {
                            ctx.cont = Some(b);
                        }
                        b
                    }
                };
                let args = self.args(&carried);
                self.fb.jump(target, &args);
                self.live = false;
            }
            HStmt::Return(e) => {
                let v = match e {
                    Some(e) => self.expr(e),
                    None => None,
                };
                self.fb.ret(v);
                self.live = false;
            }
            HStmt::Abort(code) => {
                self.fb.abort(*code);
                self.live = false;
            }
            HStmt::Expr(e) => {
                self.expr(e);
            }
        }
    }

    fn if_stmt(&mut self, c: &HExpr, t: &[HStmt], e: &[HStmt]) {
        if fold(c) == Some(1) {
            self.stmts(t);
            return;
        }
        let carried = self.carried(&[t, e]);
        let cond = self.cond(c);
        let then_b = self.fb.create_block();
        let mut join: Option<Block> = None;
        if e.is_empty() {
            let j = self.join_block(&carried);
            let args = self.args(&carried);
            self.fb.brif(cond, then_b, &[], j, &args);
            join = Some(j);
            let saved = self.env.clone();
            self.enter(then_b, &[]);
            self.stmts(t);
            if self.live {
                let args = self.args(&carried);
                self.fb.jump(j, &args);
            }
            self.env = saved;
        } else {
            let else_b = self.fb.create_block();
            self.fb.brif(cond, then_b, &[], else_b, &[]);
            let saved = self.env.clone();
            for (b, body) in [(then_b, t), (else_b, e)] {
                self.env = saved.clone();
                self.enter(b, &[]);
                self.stmts(body);
                if self.live {
                    let j = match join {
                        Some(j) => j,
                        None => {
                            let j = self.join_block(&carried);
                            join = Some(j);
                            j
                        }
                    };
                    let args = self.args(&carried);
                    self.fb.jump(j, &args);
                }
            }
            self.env = saved;
        }
        match join {
            Some(j) => self.enter(j, &carried),
            None => self.live = false,
        }
    }

    fn while_loop(&mut self, c: &HExpr, body: &[HStmt]) {
        let carried = self.carried(&[body]);
        let header = self.join_block(&carried);
        let args = self.args(&carried);
        self.fb.jump(header, &args);
        self.enter(header, &carried);
        let mut exit = None;
        let body_b = self.fb.create_block();
        if fold(c) == Some(1) {
            self.fb.jump(body_b, &[]);
        } else {
            let cond = self.cond(c);
            let x = self.join_block(&carried);
            let args = self.args(&carried);
            self.fb.brif(cond, body_b, &[], x, &args);
            exit = Some(x);
        }
        let at_header = self.env.clone();
        self.loops.push(LoopCtx { carried: carried.clone(), cont: None, has_latch: false, header, exit });
        self.enter(body_b, &[]);
        self.stmts(body);
        if self.live {
            let args = self.args(&carried);
            self.fb.jump(header, &args);
        }
        let ctx = self.loops.pop();
        self.env = at_header;
        match ctx.and_then(|c| c.exit) {
            Some(x) => self.enter(x, &carried),
            None => self.live = false,
        }
    }

    fn for_loop(&mut self, var: VarId, end_var: VarId, start: &HExpr, end: &HExpr, body: &[HStmt]) {
        let Some(s) = self.expr(start) else { return };
        let Some(e) = self.expr(end) else { return };
        if let Some(slot) = self.env.get_mut(end_var) {
            *slot = Some(e);
        }
        let carried: Vec<VarId> = self.carried(&[body]);
        let mut header_vars = carried.clone();
        header_vars.push(var);
        let header = self.join_block(&header_vars);
        let mut args = self.args(&carried);
        args.push(s);
        self.fb.jump(header, &args);
        self.enter(header, &header_vars);
        let signed = matches!(self.f.vars.get(var), Some(Ty::Int { signed: true, .. }));
        let i = self.get(var);
        let endv = self.get(end_var);
        let cond = self.fb.icmp(if signed { IntCC::Slt } else { IntCC::Ult }, i, endv);
        let body_b = self.fb.create_block();
        let exit = self.join_block(&carried);
        let xargs = self.args(&carried);
        self.fb.brif(cond, body_b, &[], exit, &xargs);
        let at_header = self.env.clone();
        self.loops.push(LoopCtx { carried: carried.clone(), cont: None, has_latch: true, header, exit: Some(exit) });
        self.enter(body_b, &[]);
        let bounded = match (fold(start), fold(end)) {
            // (A u64 end past i64::MAX folds negative: not bounded.)
            (Some(lo), Some(hi)) if lo >= 0 && hi >= 0 => {
                let mut set = BTreeSet::new();
                assigned(body, &mut set);
                (!set.contains(&var)).then_some((var, hi))
            }
            _ => None,
        };
        self.ranges.extend(bounded);
        self.stmts(body);
        if bounded.is_some() {
            self.ranges.pop();
        }
        let ctx = self.loops.pop();
        // The latch: where the body's end and every `continue` meet to step the counter.
        let latch = ctx.as_ref().and_then(|c| c.cont);
        let latch = match (latch, self.live) {
            (Some(l), true) => {
                let args = self.args(&carried);
                self.fb.jump(l, &args);
                Some(l)
            }
            (Some(l), false) => Some(l),
            (None, true) => {
                let l = self.join_block(&carried);
                let args = self.args(&carried);
                self.fb.jump(l, &args);
                Some(l)
            }
            (None, false) => None,
        };
        if let Some(l) = latch {
            self.env = at_header.clone();
            self.enter(l, &carried);
            let i = self.get(var);
            let ty = self.var_ty(var);
            let one = self.fb.iconst(ty, 1);
            let next = self.fb.iadd(i, one);
            let mut args = self.args(&carried);
            args.push(next);
            self.fb.jump(header, &args);
        }
        self.env = at_header;
        self.enter(exit, &carried);
    }

    fn cond(&mut self, c: &HExpr) -> Value {
        match self.expr(c) {
            Some(v) => v,
            None => {
                self.internal.push("condition without a value".into());
                self.fb.iconst(Type::I8, 0)
            }
        }
    }

    /// Region, dynamic offset and static offset of a place, with the array bounds check.
    fn address(&mut self, p: &HPlace) -> (Region, Value, u32) {
        let off = match &p.index {
            None => self.fb.iconst(Type::I32, 0),
            Some(ix) => {
                let idx = match self.expr(ix) {
                    Some(v) => v,
                    None => self.fb.iconst(Type::I64, 0),
                };
                if let Some(len) = p.bound
                    && !self.below(ix, i64::from(len))
                {
                    let n = self.fb.iconst(Type::I64, i64::from(len));
                    let ok = self.fb.icmp(IntCC::Ult, idx, n);
                    let ok_b = self.fb.create_block();
                    let bad_b = self.fb.create_block();
                    self.fb.brif(ok, ok_b, &[], bad_b, &[]);
                    self.fb.switch_to_block(bad_b);
                    self.fb.abort(ARRAY_INDEX_ABORT);
                    self.fb.switch_to_block(ok_b);
                }
                if p.scale == 1 {
                    idx
                } else {
                    let k = self.fb.iconst(Type::I64, i64::from(p.scale));
                    self.fb.imul(idx, k)
                }
            }
        };
        (Region::new(p.region), off, p.imm)
    }

    /// Whether the integer expression `e` provably lies in `[0, len)` (as a signed and as an
    /// unsigned number) wherever it is evaluated, so that an array index check against `len`
    /// can be left out. Conservative: constants, `x & m` with either side provably in range
    /// (the result is at most that side, unsigned), unsigned `x % m` with `0 < m <= len`,
    /// value-preserving casts of such expressions, and counters of constant `for` ranges
    /// ([`Lowerer::ranges`]) whose end is at most `len`.
    fn below(&self, e: &HExpr, len: i64) -> bool {
        if let Some(k) = fold(e) {
            return (0..len).contains(&k);
        }
        match &e.kind {
            HExprKind::Var(v) => self.ranges.iter().rev().any(|&(r, hi)| r == *v && hi <= len),
            HExprKind::Binary(BinOp::And, a, b) => self.below(a, len) || self.below(b, len),
            HExprKind::Binary(BinOp::Rem, a, b) => {
                matches!(a.ty, Ty::Int { signed: false, .. }) && fold(b).is_some_and(|m| 0 < m && m <= len)
            }
            HExprKind::Cast(a) if matches!((a.ty, e.ty), (Ty::Int { .. }, Ty::Int { .. })) => {
                let (Some(from), Some(to)) = (a.ty.ir(), e.ty.ir()) else { return false };
                // Widening keeps a non-negative value; narrowing keeps it if it fits below
                // the narrow type's sign bit.
                let keeps = to.bits() >= from.bits() || (to.bits() < 64 && len <= 1i64 << (to.bits() - 1));
                keeps && self.below(a, len)
            }
            _ => false,
        }
    }

    fn expr(&mut self, e: &HExpr) -> Option<Value> {
        let ty = e.ty.ir().unwrap_or(Type::I64);
        Some(match &e.kind {
            HExprKind::Const(v) => self.fb.iconst(ty, *v),
            HExprKind::Var(v) => self.get(*v),
            HExprKind::Load(p) => {
                let (r, off, imm) = self.address(p);
                self.fb.load(ty, r, off, imm)
            }
            HExprKind::Binary(op, a, b) => {
                let signed = matches!(a.ty, Ty::Int { signed: true, .. });
                let x = self.value(a);
                let y = self.value(b);
                if op.is_comparison() {
                    let cc = match (op, signed) {
                        (BinOp::Eq, _) => IntCC::Eq,
                        (BinOp::Ne, _) => IntCC::Ne,
                        (BinOp::Lt, true) => IntCC::Slt,
                        (BinOp::Lt, false) => IntCC::Ult,
                        (BinOp::Le, true) => IntCC::Sle,
                        (BinOp::Le, false) => IntCC::Ule,
                        (BinOp::Gt, true) => IntCC::Sgt,
                        (BinOp::Gt, false) => IntCC::Ugt,
                        (BinOp::Ge, true) => IntCC::Sge,
                        _ => IntCC::Uge,
                    };
                    return Some(self.fb.icmp(cc, x, y));
                }
                let opc = match (op, signed) {
                    (BinOp::Add, _) => Opcode::Iadd,
                    (BinOp::Sub, _) => Opcode::Isub,
                    (BinOp::Mul, _) => Opcode::Imul,
                    (BinOp::Div, true) => Opcode::Sdiv,
                    (BinOp::Div, false) => Opcode::Udiv,
                    (BinOp::Rem, true) => Opcode::Srem,
                    (BinOp::Rem, false) => Opcode::Urem,
                    (BinOp::And, _) => Opcode::Band,
                    (BinOp::Or, _) => Opcode::Bor,
                    (BinOp::Xor, _) => Opcode::Bxor,
                    (BinOp::Shl, _) => Opcode::Ishl,
                    (BinOp::Shr, true) => Opcode::Sshr,
                    (BinOp::Shr, false) => Opcode::Ushr,
                    _ => {
                        self.internal.push(format!("operator `{}` reached binary lowering", op.symbol()));
                        Opcode::Iadd
                    }
                };
                self.fb.binary(opc, x, y)
            }
            HExprKind::Neg(a) => {
                let x = self.value(a);
                let zero = self.fb.iconst(ty, 0);
                self.fb.isub(zero, x)
            }
            HExprKind::Not(a) => {
                let x = self.value(a);
                if a.ty == Ty::Bool {
                    let one = self.fb.iconst(Type::I8, 1);
                    self.fb.binary(Opcode::Bxor, x, one)
                } else {
                    self.fb.bnot(x)
                }
            }
            HExprKind::And(a, b) | HExprKind::Or(a, b) => {
                let is_and = matches!(e.kind, HExprKind::And(..));
                let x = self.value(a);
                let rhs_b = self.fb.create_block();
                let join = self.fb.create_block();
                let r = self.fb.append_block_param(join, Type::I8);
                if is_and {
                    self.fb.brif(x, rhs_b, &[], join, &[x]);
                } else {
                    self.fb.brif(x, join, &[x], rhs_b, &[]);
                }
                self.fb.switch_to_block(rhs_b);
                let y = self.value(b);
                self.fb.jump(join, &[y]);
                self.fb.switch_to_block(join);
                r
            }
            HExprKind::Cast(a) => {
                let x = self.value(a);
                let from = a.ty.ir().unwrap_or(Type::I64);
                let signed = matches!(a.ty, Ty::Int { signed: true, .. });
                if ty.bits() > from.bits() {
                    if signed { self.fb.sextend(ty, x) } else { self.fb.uextend(ty, x) }
                } else if ty.bits() < from.bits() {
                    self.fb.ireduce(ty, x)
                } else {
                    x
                }
            }
            HExprKind::Rotate(left, a, b) => {
                let x = self.value(a);
                let n = self.value(b);
                self.fb.binary(if *left { Opcode::Rotl } else { Opcode::Rotr }, x, n)
            }
            HExprKind::Call(k, args) => {
                let vals: Vec<Value> = args.iter().map(|a| self.value(a)).collect();
                return self.fb.call(FuncRef::new(*k as u32), &vals);
            }
            HExprKind::CallImport(k, args) => {
                let vals: Vec<Value> = args.iter().map(|a| self.value(a)).collect();
                return self.fb.call_import(ImportRef::new(*k as u32), &vals);
            }
            HExprKind::Error => {
                self.internal.push("an erroneous expression reached lowering".into());
                self.fb.iconst(Type::I64, 0)
            }
        })
    }

    /// An expression that must produce a value.
    fn value(&mut self, e: &HExpr) -> Value {
        match self.expr(e) {
            Some(v) => v,
            None => {
                self.internal.push("a call returning nothing used as a value".into());
                self.fb.iconst(e.ty.ir().unwrap_or(Type::I64), 0)
            }
        }
    }
}
