//! A generator of random valid graft modules for differential testing.
//!
//! Modules are built with graft-ir's builder in structured form (straight-line code, if/else
//! diamonds, counted loops, early exits), so every use is dominated by its definition by
//! construction, and then run through the verifier like any other module. They cover every
//! opcode, every integer width, handles, the data region (masked, with constant and dynamic
//! offsets), passed-in buffers (in and out of bounds), internal calls (recursion included:
//! fuel and the depth limit bound it), and imports from the mock host.

#![allow(dead_code)]

use graft_ir::abi::{self, Callable, GraftPoint};
use graft_ir::builder::{FunctionBuilder, ModuleBuilder};
use graft_ir::interp::DataValue;
use graft_ir::{FuncRef, HandleKind, ImportRef, IntCC, Module, Opcode, Region, Signature, Type, Value};

/// splitmix64: small, fast, and reproducible from one seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// An integer that often sits on an edge: 0, ±1, the extremes of a width, small numbers.
    pub fn interesting(&mut self, bits: u32) -> i64 {
        let min = if bits >= 64 { i64::MIN } else { -(1i64 << (bits - 1)) };
        let max = if bits >= 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => -1,
            3 => min,
            4 => max,
            5 | 6 => self.below(20) as i64 - 4,
            _ => {
                let x = self.next() as i64;
                if bits >= 64 { x } else { x.rem_euclid(1i64 << bits) + min }
            }
        }
    }
}

const INTS: [Type; 4] = [Type::I8, Type::I16, Type::I32, Type::I64];
const BINARY: [Opcode; 16] = [
    Opcode::Iadd,
    Opcode::Isub,
    Opcode::Imul,
    Opcode::Udiv,
    Opcode::Sdiv,
    Opcode::Urem,
    Opcode::Srem,
    Opcode::Band,
    Opcode::Bor,
    Opcode::Bxor,
    Opcode::Ishl,
    Opcode::Ushr,
    Opcode::Sshr,
    Opcode::Rotl,
    Opcode::Rotr,
    Opcode::Iadd,
];

fn sext(x: u64, bits: u32) -> i64 {
    let s = 64 - bits;
    ((x << s) as i64) >> s
}

/// The values visible at the current point of a function, with what is known of them.
#[derive(Clone, Default)]
struct Scope {
    vals: Vec<(Value, Type)>,
    /// Constants defined by `iconst` (the verifier's static-bounds rule looks at them).
    consts: Vec<(Value, i64)>,
}

impl Scope {
    fn of(&self, t: Type) -> Vec<Value> {
        self.vals.iter().filter(|(_, ty)| *ty == t).map(|(v, _)| *v).collect()
    }

    fn konst(&self, v: Value) -> Option<i64> {
        self.consts.iter().find(|(x, _)| *x == v).map(|(_, c)| *c)
    }
}

struct Gen<'r> {
    rng: &'r mut Rng,
    point: &'static GraftPoint,
    data_size: u32,
    sigs: Vec<Signature>,
    imports: Vec<(ImportRef, &'static Callable)>,
    /// Instructions left for the function being built.
    budget: i64,
}

/// A module and the inputs to run it with.
pub struct Case {
    pub module: Module,
    /// Argument sets for `fn0`.
    pub args: Vec<Vec<DataValue>>,
    /// The initial contents of each passed-in buffer `r1..` (one set per argument set).
    pub buffers: Vec<Vec<Vec<u8>>>,
}

pub fn case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    // Every point of the ABI table, as it stands (a new row is generated for at once).
    let point = &abi::GRAFT_POINTS[rng.below(abi::GRAFT_POINTS.len() as u64) as usize];
    let data_size = 1u32 << (3 + rng.below(7));
    let fuel = rng.pick(&[25u64, 120, 400, 1500, 6000]);
    let mut mb = ModuleBuilder::new(point.name, data_size, fuel);
    let init: Vec<u8> = (0..rng.below(u64::from(data_size) + 1)).map(|_| rng.next() as u8).collect();
    mb.set_data(&init);

    let mut imports = Vec::new();
    for name in point.callables {
        if rng.chance(1, 2)
            && let (Some(r), Some(c)) = (mb.import_callable(name), abi::callable(name))
        {
            imports.push((r, c));
        }
    }

    let nfuncs = 1 + rng.below(4) as usize;
    let mut sigs = vec![point.signature()];
    let handle_ok = point.params.iter().any(|p| p.ty.is_handle());
    for _ in 1..nfuncs {
        let mut params = Vec::new();
        for _ in 0..rng.below(4) {
            params.push(if handle_ok && rng.chance(1, 6) { Type::Handle(HandleKind::File) } else { rng.pick(&INTS) });
        }
        let ret = if rng.chance(1, 5) { None } else { Some(rng.pick(&INTS)) };
        sigs.push(Signature::new(&params, ret));
    }
    let refs: Vec<FuncRef> = sigs.iter().enumerate().map(|(i, s)| mb.declare_function(&format!("f{i}"), s.clone())).collect();

    let mut g = Gen { rng: &mut rng, point, data_size, sigs: sigs.clone(), imports, budget: 0 };
    for (i, &f) in refs.iter().enumerate() {
        g.budget = 8 + g.rng.below(if i == 0 { 60 } else { 30 }) as i64;
        let mut fb = mb.function(f);
        g.function(&mut fb, &sigs[i]);
    }

    let mut args = Vec::new();
    let mut buffers = Vec::new();
    for _ in 0..3 {
        args.push(point.params.iter().map(|p| g.arg(p.ty)).collect());
        buffers.push(
            point
                .regions
                .iter()
                .map(|spec| {
                    // Whole records of the row's layout most of the time, odd lengths too.
                    let records = u64::from(spec.record_size) * g.rng.pick(&[1u64, 2, 4, 8]);
                    let len = g.rng.pick(&[0u64, 3, 8, 24, 33, 64, records, records, 128]);
                    (0..len).map(|_| g.rng.next() as u8).collect()
                })
                .collect(),
        );
    }
    Case { module: mb.finish(), args, buffers }
}

impl Gen<'_> {
    fn arg(&mut self, t: Type) -> DataValue {
        match t {
            Type::Handle(k) => DataValue::Handle(k, self.rng.pick(&[0u64, 1, 2, 5, 1 << 40])),
            t => DataValue::from_bits(t, self.rng.interesting(t.bits()) as u64),
        }
    }

    fn function(&mut self, fb: &mut FunctionBuilder<'_>, sig: &Signature) {
        let mut scope = Scope::default();
        for (v, &t) in fb.params().into_iter().zip(&sig.params) {
            scope.vals.push((v, t));
        }
        self.seq(fb, &mut scope, 0, sig);
        let r = sig.ret.map(|t| self.value(fb, &mut scope, t));
        fb.ret(r.flatten());
    }

    fn iconst(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope, t: Type, imm: i64) -> Value {
        let v = fb.iconst(t, imm);
        scope.vals.push((v, t));
        scope.consts.push((v, imm));
        v
    }

    /// A value of type `t`: one in scope, or a new constant; `None` for a handle type with
    /// none in scope (handles cannot be made up).
    fn value(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope, t: Type) -> Option<Value> {
        let have = scope.of(t);
        if !have.is_empty() && (t.is_handle() || self.rng.chance(3, 4)) {
            return Some(self.rng.pick(&have));
        }
        if t.is_handle() {
            return None;
        }
        let imm = self.rng.interesting(t.bits());
        Some(self.iconst(fb, scope, t, imm))
    }

    fn push(&mut self, scope: &mut Scope, v: Option<Value>, t: Option<Type>) {
        if let (Some(v), Some(t)) = (v, t) {
            scope.vals.push((v, t));
        }
    }

    fn seq(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope, depth: u32, sig: &Signature) {
        while self.budget > 0 {
            self.budget -= 1;
            let roll = self.rng.below(100);
            if depth < 3 && roll < 7 {
                self.diamond(fb, scope, depth, sig);
            } else if depth < 3 && roll < 13 {
                self.counted_loop(fb, scope, depth, sig);
            } else if roll < 16 {
                self.early_exit(fb, scope, sig);
            } else if depth > 0 && roll < 22 {
                return;
            } else {
                self.simple(fb, scope);
            }
        }
    }

    fn cond(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope) -> Value {
        if self.rng.chance(1, 2) {
            let t = self.rng.pick(&INTS);
            let a = self.value(fb, scope, t).expect("ints always exist");
            let b = self.value(fb, scope, t).expect("ints always exist");
            let c = fb.icmp(self.rng.pick(&IntCC::ALL), a, b);
            scope.vals.push((c, Type::I8));
            c
        } else {
            self.value(fb, scope, Type::I8).expect("ints always exist")
        }
    }

    fn some_type(&mut self, scope: &Scope) -> Type {
        let handles: Vec<Type> = scope.vals.iter().map(|(_, t)| *t).filter(|t| t.is_handle()).collect();
        if !handles.is_empty() && self.rng.chance(1, 6) { self.rng.pick(&handles) } else { self.rng.pick(&INTS) }
    }

    fn diamond(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope, depth: u32, sig: &Signature) {
        let c = self.cond(fb, scope);
        let t = self.some_type(scope);
        let then_b = fb.create_block();
        let merge = fb.create_block();
        let param = fb.append_block_param(merge, t);
        let outer = scope.clone();
        if self.rng.chance(1, 3) {
            // One-armed: the else edge goes straight to the merge with a value.
            let Some(e) = self.value(fb, scope, t) else { return self.simple(fb, scope) };
            fb.brif(c, then_b, &[], merge, &[e]);
        } else {
            let else_b = fb.create_block();
            fb.brif(c, then_b, &[], else_b, &[]);
            fb.switch_to_block(else_b);
            let mut inner = outer.clone();
            self.seq(fb, &mut inner, depth + 1, sig);
            let v = self.value(fb, &mut inner, t).expect("the type was chosen from scope");
            fb.jump(merge, &[v]);
        }
        fb.switch_to_block(then_b);
        let mut inner = outer.clone();
        self.seq(fb, &mut inner, depth + 1, sig);
        let v = self.value(fb, &mut inner, t).expect("the type was chosen from scope");
        fb.jump(merge, &[v]);
        fb.switch_to_block(merge);
        *scope = outer;
        scope.vals.push((param, t));
    }

    fn counted_loop(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope, depth: u32, sig: &Signature) {
        let t = self.some_type(scope);
        let Some(init) = self.value(fb, scope, t) else { return self.simple(fb, scope) };
        let trips = self.rng.below(7) as i64;
        let n = if self.rng.chance(1, 3) {
            // A data-dependent trip count, kept small.
            let x = self.value(fb, scope, Type::I32).expect("ints always exist");
            let seven = self.iconst(fb, scope, Type::I32, 7);
            let n = fb.binary(Opcode::Band, x, seven);
            scope.vals.push((n, Type::I32));
            n
        } else {
            self.iconst(fb, scope, Type::I32, trips)
        };
        let zero = self.iconst(fb, scope, Type::I32, 0);
        let header = fb.create_block();
        let i = fb.append_block_param(header, Type::I32);
        let acc = fb.append_block_param(header, t);
        let exit = fb.create_block();
        let out = fb.append_block_param(exit, t);
        fb.jump(header, &[zero, init]);
        fb.switch_to_block(header);
        let outer = scope.clone();
        let mut inner = outer.clone();
        inner.vals.push((i, Type::I32));
        inner.vals.push((acc, t));
        self.seq(fb, &mut inner, depth + 1, sig);
        let next_acc = self.value(fb, &mut inner, t).expect("acc is in scope");
        let one = self.iconst(fb, &mut inner, Type::I32, 1);
        let i1 = fb.iadd(i, one);
        let more = fb.icmp(IntCC::Slt, i1, n);
        fb.brif(more, header, &[i1, next_acc], exit, &[next_acc]);
        fb.switch_to_block(exit);
        *scope = outer;
        scope.vals.push((out, t));
    }

    fn early_exit(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope, sig: &Signature) {
        let c = self.cond(fb, scope);
        let exit = fb.create_block();
        let cont = fb.create_block();
        fb.brif(c, exit, &[], cont, &[]);
        fb.switch_to_block(exit);
        if self.rng.chance(1, 3) {
            let code = self.rng.pick(&[0u32, 1, 7, u32::MAX]);
            fb.abort(code);
        } else {
            let mut inner = scope.clone();
            let r = sig.ret.and_then(|t| self.value(fb, &mut inner, t));
            fb.ret(r);
        }
        fb.switch_to_block(cont);
    }

    fn simple(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope) {
        match self.rng.below(20) {
            0 => {
                let t = self.rng.pick(&INTS);
                let imm = self.rng.interesting(t.bits());
                self.iconst(fb, scope, t, imm);
            }
            1..=6 => {
                let t = self.rng.pick(&INTS);
                let op = self.rng.pick(&BINARY);
                let mut a = self.value(fb, scope, t).expect("int");
                let mut b = self.value(fb, scope, t).expect("int");
                if matches!(op, Opcode::Sdiv | Opcode::Srem) && self.rng.chance(1, 8) {
                    // The one signed overflow: MIN / -1.
                    a = self.iconst(fb, scope, t, i64::MIN >> (64 - t.bits()));
                    b = self.iconst(fb, scope, t, -1);
                }
                if matches!(op, Opcode::Udiv | Opcode::Sdiv | Opcode::Urem | Opcode::Srem) && self.rng.chance(2, 3) {
                    // Mostly keep divisors non-zero so that runs get past divisions.
                    let one = self.iconst(fb, scope, t, 1);
                    b = fb.binary(Opcode::Bor, b, one);
                }
                let r = fb.binary(op, a, b);
                scope.vals.push((r, t));
            }
            7 => {
                let t = self.rng.pick(&INTS);
                let a = self.value(fb, scope, t).expect("int");
                let r = fb.bnot(a);
                scope.vals.push((r, t));
            }
            8 => {
                let t = self.some_type(scope);
                let cc = if t.is_handle() { self.rng.pick(&[IntCC::Eq, IntCC::Ne]) } else { self.rng.pick(&IntCC::ALL) };
                let (Some(a), Some(b)) = (self.value(fb, scope, t), self.value(fb, scope, t)) else { return };
                let r = fb.icmp(cc, a, b);
                scope.vals.push((r, Type::I8));
            }
            9 => {
                let c = self.cond(fb, scope);
                let t = self.some_type(scope);
                let (Some(a), Some(b)) = (self.value(fb, scope, t), self.value(fb, scope, t)) else { return };
                let r = fb.select(c, a, b);
                scope.vals.push((r, t));
            }
            10 => {
                let i = self.rng.below(4) as usize;
                let j = self.rng.below(4) as usize;
                if i == j {
                    return;
                }
                let (from, to) = (INTS[i], INTS[j]);
                let a = self.value(fb, scope, from).expect("int");
                let op = if j < i { Opcode::Ireduce } else if self.rng.chance(1, 2) { Opcode::Uextend } else { Opcode::Sextend };
                let r = fb.convert(op, to, a);
                scope.vals.push((r, to));
            }
            11..=14 => self.memory(fb, scope, true),
            15 | 16 => self.memory(fb, scope, false),
            17 => self.call(fb, scope),
            _ => self.call_import(fb, scope),
        }
    }

    fn memory(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope, load: bool) {
        let nregions = self.point.regions.len() as u32;
        let region = if self.rng.chance(1, 2) { Region::DATA } else { Region(1 + self.rng.below(u64::from(nregions)) as u32) };
        let writable = region == Region::DATA || self.point.region(region).is_some_and(|s| s.rights.writable());
        let load = load || !writable;
        let t = self.rng.pick(&INTS);
        let w = t.bytes();
        let off_ty = if self.rng.chance(1, 2) { Type::I32 } else { Type::I64 };
        let (offset, imm) = if region == Region::DATA {
            let size = u64::from(self.data_size);
            let mut offset = self.value(fb, scope, off_ty).expect("int");
            if let Some(c) = scope.konst(offset) {
                let dynamic = if off_ty == Type::I32 { c as u32 as u64 } else { c as u64 };
                if dynamic.saturating_add(u64::from(w)) > size {
                    let c = self.rng.below(size - u64::from(w) + 1) as i64;
                    offset = self.iconst(fb, scope, off_ty, c);
                }
            }
            let dynamic = scope.konst(offset).map_or(0, |c| if off_ty == Type::I32 { c as u32 as u64 } else { c as u64 });
            let room = size - u64::from(w) - dynamic;
            (offset, self.rng.below(room + 1) as u32)
        } else {
            let offset = match self.rng.below(20) {
                0..=8 => {
                    let c = self.rng.below(24) as i64;
                    self.iconst(fb, scope, off_ty, c)
                }
                9..=17 => {
                    let x = self.value(fb, scope, off_ty).expect("int");
                    let m = self.iconst(fb, scope, off_ty, 31);
                    let r = fb.binary(Opcode::Band, x, m);
                    scope.vals.push((r, off_ty));
                    r
                }
                _ => self.value(fb, scope, off_ty).expect("int"),
            };
            let imm = match self.rng.below(20) {
                0 => graft_ir::limits::MAX_IMM_OFFSET,
                1 => self.rng.below(u64::from(graft_ir::limits::MAX_IMM_OFFSET)) as u32,
                2 | 3 => self.rng.below(40) as u32,
                _ => self.rng.below(8) as u32,
            };
            (offset, imm)
        };
        if load {
            let r = fb.load(t, region, offset, imm);
            scope.vals.push((r, t));
        } else {
            let x = self.value(fb, scope, t).expect("int");
            fb.store(region, offset, imm, x);
        }
    }

    fn call(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope) {
        let k = self.rng.below(self.sigs.len() as u64) as usize;
        let sig = self.sigs[k].clone();
        let mut args = Vec::new();
        for &t in &sig.params {
            let Some(a) = self.value(fb, scope, t) else { return };
            args.push(a);
        }
        let r = fb.call(FuncRef(k as u32), &args);
        self.push(scope, r, sig.ret);
    }

    fn call_import(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope) {
        if self.imports.is_empty() {
            return self.simple_arith(fb, scope);
        }
        let (r, c) = self.rng.pick(&self.imports);
        let mut args = Vec::new();
        for &t in c.params {
            let a = if t.is_int() && self.rng.chance(1, 2) {
                // Small arguments, so that counters and locks are usually valid.
                let x = self.rng.below(20) as i64 - 2;
                Some(self.iconst(fb, scope, t, x))
            } else {
                self.value(fb, scope, t)
            };
            let Some(a) = a else { return };
            args.push(a);
        }
        let v = fb.call_import(r, &args);
        self.push(scope, v, c.ret);
    }

    fn simple_arith(&mut self, fb: &mut FunctionBuilder<'_>, scope: &mut Scope) {
        let t = self.rng.pick(&INTS);
        let a = self.value(fb, scope, t).expect("int");
        let b = self.value(fb, scope, t).expect("int");
        let r = fb.iadd(a, b);
        scope.vals.push((r, t));
    }
}

/// Sign-extend helper for printing.
pub fn show(v: &DataValue) -> String {
    let _ = sext;
    format!("{v}")
}
