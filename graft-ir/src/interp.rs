//! The reference interpreter: the definition of what a verified graft does.
//!
//! Every abort condition of the IR is decided here, and the JIT must agree with it exactly
//! (result, abort reason, and fuel left), which differential tests check. It favours being
//! obviously right over speed.
//!
//! Semantics in brief (`docs/graft-ir.md` has the full text):
//! - **fuel**: a running count starts at the fuel granted (at most `i64::MAX`). Entering a
//!   block subtracts its instruction count, terminator included, and a `call_import` the
//!   callable's `cost`; the count may go below zero between **fuel checks**, which abort
//!   `OutOfFuel` if it is below zero: on entry to a function's entry block and to every
//!   target of a retreating edge ([`fuel_check_blocks`]), after an import's cost, before a
//!   `call` and at a `return`. Every cycle of a CFG contains a retreating edge, so a loop
//!   cannot run unchecked. A call that ends leaves `max(count, 0)`: 0 after `OutOfFuel`.
//! - **calls**: the entry function runs at depth 1; a `call` checks the fuel, then aborts
//!   `CallDepthExceeded` if it would run a frame at depth `MAX_CALL_DEPTH + 1` (before the
//!   callee's entry block is charged).
//! - **memory**: the offset is `zext64(vo) + imm` (wrapping in 64 bits). On `r0` (size `S`)
//!   it is masked to `off & (S - w)`; on `r1..` (length `len`) the access is allowed iff
//!   `w <= len && off <= len - w`, else `OutOfBounds`. Little-endian.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::abi::Callable;
use crate::abort::AbortReason;
use crate::entity::{FuncRef, Region, Value};
use crate::entity::Block;
use crate::ir::{BlockCall, Function, InstData, Module};
use crate::limits::MAX_CALL_DEPTH;
use crate::opcode::{IntCC, Opcode};
use crate::types::{HandleKind, Type};
use crate::verifier::Verified;

/// A run-time value: an integer of an IR type, or a handle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DataValue {
    /// An i8 (also a boolean).
    I8(i8),
    /// An i16.
    I16(i16),
    /// An i32.
    I32(i32),
    /// An i64.
    I64(i64),
    /// A handle: its kind and the kernel's opaque 64-bit name for the object.
    Handle(HandleKind, u64),
}

impl DataValue {
    /// The IR type of the value.
    pub fn ty(self) -> Type {
        match self {
            DataValue::I8(_) => Type::I8,
            DataValue::I16(_) => Type::I16,
            DataValue::I32(_) => Type::I32,
            DataValue::I64(_) => Type::I64,
            DataValue::Handle(k, _) => Type::Handle(k),
        }
    }

    /// The value's bits, zero-extended to 64 (the canonical form the interpreter computes on).
    pub fn to_bits(self) -> u64 {
        match self {
            DataValue::I8(x) => x as u8 as u64,
            DataValue::I16(x) => x as u16 as u64,
            DataValue::I32(x) => x as u32 as u64,
            DataValue::I64(x) => x as u64,
            DataValue::Handle(_, h) => h,
        }
    }

    /// The value of type `ty` whose low bits are `bits` (higher bits are ignored).
    pub fn from_bits(ty: Type, bits: u64) -> DataValue {
        match ty {
            Type::I8 => DataValue::I8(bits as i8),
            Type::I16 => DataValue::I16(bits as i16),
            Type::I32 => DataValue::I32(bits as i32),
            Type::I64 => DataValue::I64(bits as i64),
            Type::Handle(k) => DataValue::Handle(k, bits),
        }
    }

    /// The value as a sign-extended integer (a handle's raw name for handles).
    pub fn as_i64(self) -> i64 {
        match self {
            DataValue::I8(x) => x.into(),
            DataValue::I16(x) => x.into(),
            DataValue::I32(x) => x.into(),
            DataValue::I64(x) => x,
            DataValue::Handle(_, h) => h as i64,
        }
    }
}

/// Integers print as signed decimals, handles as `handle<file>:7`.
impl fmt::Display for DataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataValue::Handle(k, h) => write!(f, "{}:{h}", Type::Handle(*k)),
            v => write!(f, "{}", v.as_i64()),
        }
    }
}

/// The kernel side of import calls.
pub trait Host {
    /// Perform a call of `callable` (an import of the graft) with `args`, which the
    /// interpreter guarantees match the callable's parameter types. Return the result (of the
    /// callable's return type, `None` if it has none) or an abort reason, typically
    /// `CallableFailed(code)` for rejected arguments.
    fn call(&mut self, callable: &'static Callable, args: &[DataValue]) -> Result<Option<DataValue>, AbortReason>;
}

/// A host with no callables: every call fails `CallableFailed(BAD_ARGUMENT)`.
pub struct NoHost;

impl Host for NoHost {
    fn call(&mut self, _: &'static Callable, _: &[DataValue]) -> Result<Option<DataValue>, AbortReason> {
        Err(AbortReason::CallableFailed(crate::abi::errors::BAD_ARGUMENT))
    }
}

/// Run the graft's entry function `fn0` with `args`, with `regions[0]` the data region and
/// `regions[k]` the point's buffer `rk`, and `fuel` for the whole call.
///
/// The data region must be `resources.data_size` bytes already holding the graft's data
/// (initialised from the module's data section when the graft was loaded; it persists
/// across calls); see [`initial_data`].
pub fn interpret(
    verified: &Verified,
    args: &[DataValue],
    regions: &mut [&mut [u8]],
    fuel: u64,
    host: &mut impl Host,
) -> Result<DataValue, AbortReason> {
    let mut fuel = fuel;
    match run(verified, Module::ENTRY, args, regions, &mut fuel, host)? {
        Some(v) => Ok(v),
        None => Err(AbortReason::HostContract),
    }
}

/// The initial contents of the data region: the data section, zero-padded to the data size.
pub fn initial_data(module: &Module) -> Vec<u8> {
    let mut d = vec![0u8; module.resources.data_size as usize];
    let n = module.data.len().min(d.len());
    d[..n].copy_from_slice(&module.data[..n]);
    d
}

/// Run function `func` (at call depth 1) and leave the remaining fuel in `fuel`: the entry
/// point for differential tests, which compare the fuel left as well as the outcome.
pub fn run(
    verified: &Verified,
    func: FuncRef,
    args: &[DataValue],
    regions: &mut [&mut [u8]],
    fuel: &mut u64,
    host: &mut impl Host,
) -> Result<Option<DataValue>, AbortReason> {
    let Some(f) = verified.module().function(func) else {
        return Err(AbortReason::HostContract);
    };
    if args.len() != f.sig.params.len() || args.iter().zip(&f.sig.params).any(|(a, t)| a.ty() != *t) {
        return Err(AbortReason::HostContract);
    }
    let bits: Vec<u64> = args.iter().map(|a| a.to_bits()).collect();
    let checks = vec![None; verified.module().functions.len()];
    let granted = i64::try_from(*fuel).unwrap_or(i64::MAX);
    let mut m = Machine { v: verified, regions, fuel: granted, host, checks };
    let r = m.call(func, &bits, 1);
    // Below zero only between checks; an abort there (or `OutOfFuel`) leaves none.
    *fuel = m.fuel.max(0) as u64;
    let r = r?;
    Ok(match (f.sig.ret, r) {
        (Some(t), Some(b)) => Some(DataValue::from_bits(t, b)),
        _ => None,
    })
}

struct Machine<'a, 'r, H> {
    v: &'a Verified,
    regions: &'a mut [&'r mut [u8]],
    /// The running fuel count: below zero only between two fuel checks.
    fuel: i64,
    host: &'a mut H,
    /// Per function, once it has run: [`fuel_check_blocks`].
    checks: Vec<Option<Rc<Vec<bool>>>>,
}

/// The reachable blocks of `f` in reverse post-order of the depth-first search from `b0`
/// that visits a terminator's targets in order (`brif`: then, else). The JIT lowers blocks in
/// this order and both it and the interpreter place fuel checks by it.
pub fn reverse_post_order(f: &Function) -> Vec<Block> {
    let n = f.blocks.len();
    let mut seen = vec![false; n];
    let mut post = Vec::with_capacity(n);
    // (block, index of the next successor to visit)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    if n > 0 {
        seen[0] = true;
        stack.push((0, 0));
    }
    while let Some(top) = stack.last_mut() {
        let (bi, next) = *top;
        let succs = f.blocks[bi].insts.last().map(|i| i.data.targets()).unwrap_or_default();
        if let Some(t) = succs.get(next) {
            top.1 += 1;
            let ti = t.block.index();
            if ti < n && !seen[ti] {
                seen[ti] = true;
                stack.push((ti, 0));
            }
        } else {
            post.push(Block(bi as u32));
            stack.pop();
        }
    }
    post.reverse();
    post
}

/// Which blocks of `f` check the fuel on entry (indexed by block number): `b0`, and the
/// target of every **retreating edge**, an edge `u -> v` of reachable blocks with
/// `rpo(v) <= rpo(u)` in [`reverse_post_order`].
///
/// Complete for any CFG, reducible or not: every edge that is not retreating goes to a block
/// strictly later in the order, so a path made only of such edges never comes back to where
/// it started, and every cycle holds a retreating edge, whose target checks.
pub fn fuel_check_blocks(f: &Function) -> Vec<bool> {
    let order = reverse_post_order(f);
    let mut rpo = vec![usize::MAX; f.blocks.len()];
    for (i, b) in order.iter().enumerate() {
        rpo[b.index()] = i;
    }
    let mut check = vec![false; f.blocks.len()];
    if let Some(c) = check.first_mut() {
        *c = true;
    }
    for b in &order {
        let from = rpo[b.index()];
        let succs = f.blocks[b.index()].insts.last().map(|i| i.data.targets()).unwrap_or_default();
        for t in succs {
            let ti = t.block.index();
            if rpo.get(ti).is_some_and(|&to| to <= from) {
                check[ti] = true;
            }
        }
    }
    check
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

fn sext(x: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((x << shift) as i64) >> shift
}

/// The result of a binary opcode on `bits`-wide operands, or its abort.
fn binary(op: Opcode, bits: u32, a: u64, b: u64) -> Result<u64, AbortReason> {
    let m = mask(bits);
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    let amt = (b & u64::from(bits - 1)) as u32;
    let r = match op {
        Opcode::Iadd => a.wrapping_add(b),
        Opcode::Isub => a.wrapping_sub(b),
        Opcode::Imul => a.wrapping_mul(b),
        Opcode::Udiv | Opcode::Urem | Opcode::Sdiv | Opcode::Srem if b == 0 => {
            return Err(AbortReason::DivisionByZero);
        }
        Opcode::Udiv => a / b,
        Opcode::Urem => a % b,
        Opcode::Sdiv | Opcode::Srem if sa == sext(1 << (bits - 1), bits) && sb == -1 => {
            return Err(AbortReason::IntegerOverflow);
        }
        Opcode::Sdiv => (sa / sb) as u64,
        Opcode::Srem => (sa % sb) as u64,
        Opcode::Band => a & b,
        Opcode::Bor => a | b,
        Opcode::Bxor => a ^ b,
        Opcode::Ishl => a << amt,
        Opcode::Ushr => a >> amt,
        Opcode::Sshr => (sa >> amt) as u64,
        Opcode::Rotl | Opcode::Rotr => {
            let left = if op == Opcode::Rotl { amt } else { (bits - amt) % bits };
            if left == 0 { a } else { (a << left) | (a >> (bits - left)) }
        }
        // The verifier admits only binary opcodes here.
        _ => return Err(AbortReason::HostContract),
    };
    Ok(r & m)
}

fn compare(cond: IntCC, bits: u32, a: u64, b: u64) -> bool {
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    match cond {
        IntCC::Eq => a == b,
        IntCC::Ne => a != b,
        IntCC::Slt => sa < sb,
        IntCC::Sle => sa <= sb,
        IntCC::Sgt => sa > sb,
        IntCC::Sge => sa >= sb,
        IntCC::Ult => a < b,
        IntCC::Ule => a <= b,
        IntCC::Ugt => a > b,
        IntCC::Uge => a >= b,
    }
}

impl<H: Host> Machine<'_, '_, H> {
    /// Subtract `cost` from the running fuel, without a check. Costs are block lengths and
    /// callable costs (at most 2^16), and fewer than 2^40 of them run between two checks, so
    /// the count never comes near `i64::MIN`.
    fn spend(&mut self, cost: u64) {
        self.fuel = self.fuel.saturating_sub(cost as i64);
    }

    /// A fuel check: abort `OutOfFuel` if more has been spent than granted.
    fn check_fuel(&self) -> Result<(), AbortReason> {
        if self.fuel < 0 { Err(AbortReason::OutOfFuel) } else { Ok(()) }
    }

    /// The byte range of an access of `width` bytes at `off` in `region`.
    fn locate(&mut self, region: Region, off: u64, width: u32) -> Result<(usize, usize), AbortReason> {
        let w = u64::from(width);
        let Some(mem) = self.regions.get(region.index()) else {
            return Err(AbortReason::HostContract);
        };
        let len = mem.len() as u64;
        let start = if region == Region::DATA {
            if !len.is_power_of_two() || len < w {
                return Err(AbortReason::HostContract);
            }
            off & (len - w)
        } else {
            if w > len || off > len - w {
                return Err(AbortReason::OutOfBounds);
            }
            off
        };
        Ok((region.index(), start as usize))
    }

    fn load(&mut self, region: Region, off: u64, width: u32) -> Result<u64, AbortReason> {
        let (r, start) = self.locate(region, off, width)?;
        let bytes = self.regions[r].get(start..start + width as usize).ok_or(AbortReason::HostContract)?;
        Ok(bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn store(&mut self, region: Region, off: u64, width: u32, value: u64) -> Result<(), AbortReason> {
        let (r, start) = self.locate(region, off, width)?;
        let bytes = self.regions[r].get_mut(start..start + width as usize).ok_or(AbortReason::HostContract)?;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (value >> (8 * i)) as u8;
        }
        Ok(())
    }

    /// Run `func` at `depth` with argument bits; its result bits if it returns a value.
    fn call(&mut self, func: FuncRef, args: &[u64], depth: u32) -> Result<Option<u64>, AbortReason> {
        if depth > MAX_CALL_DEPTH {
            return Err(AbortReason::CallDepthExceeded);
        }
        let v = self.v;
        let f = v.module().function(func).ok_or(AbortReason::HostContract)?;
        let types = v.value_types(func);
        let slot = self.checks.get_mut(func.index()).ok_or(AbortReason::HostContract)?;
        let checks = Rc::clone(slot.get_or_insert_with(|| Rc::new(fuel_check_blocks(f))));
        self.run_body(f, args, depth, types, &checks)
    }

    fn run_body(
        &mut self,
        f: &Function,
        args: &[u64],
        depth: u32,
        types: &[Type],
        checks: &[bool],
    ) -> Result<Option<u64>, AbortReason> {
        let v = self.v;
        let mut vals = vec![0u64; types.len()];
        let ty = |x: Value| types.get(x.index()).copied().unwrap_or(Type::I64);
        let mut bi = 0usize;
        let mut block = f.blocks.first().ok_or(AbortReason::HostContract)?;
        let mut incoming: Vec<u64> = args.to_vec();
        loop {
            for (p, &bits) in block.params.iter().zip(&incoming) {
                vals[p.value.index()] = bits;
            }
            self.spend(block.insts.len() as u64);
            if checks.get(bi).copied().unwrap_or(true) {
                self.check_fuel()?;
            }
            let mut next: Option<&BlockCall> = None;
            for inst in &block.insts {
                let get = |x: Value| vals.get(x.index()).copied().unwrap_or(0);
                let result: Option<u64> = match &inst.data {
                    InstData::Iconst { ty, imm } => Some(*imm as u64 & mask(ty.bits())),
                    InstData::Binary { op, args } => {
                        Some(binary(*op, ty(args[0]).bits(), get(args[0]), get(args[1]))?)
                    }
                    InstData::Unary { arg, .. } => Some(!get(*arg) & mask(ty(*arg).bits())),
                    InstData::Icmp { cond, args } => {
                        Some(u64::from(compare(*cond, ty(args[0]).bits(), get(args[0]), get(args[1]))))
                    }
                    InstData::Select { args } => {
                        Some(if get(args[0]) != 0 { get(args[1]) } else { get(args[2]) })
                    }
                    InstData::Convert { op, ty: to, arg } => {
                        let x = get(*arg);
                        Some(match op {
                            Opcode::Sextend => sext(x, ty(*arg).bits()) as u64 & mask(to.bits()),
                            _ => x & mask(to.bits()),
                        })
                    }
                    InstData::Load { ty, region, offset, imm } => {
                        let off = get(*offset).wrapping_add(u64::from(*imm));
                        Some(self.load(*region, off, ty.bytes())?)
                    }
                    InstData::Store { region, offset, imm, value } => {
                        let off = get(*offset).wrapping_add(u64::from(*imm));
                        self.store(*region, off, ty(*value).bytes(), get(*value))?;
                        None
                    }
                    InstData::Call { func: callee, args } => {
                        self.check_fuel()?;
                        let a: Vec<u64> = args.iter().map(|&x| get(x)).collect();
                        self.call(*callee, &a, depth + 1)?
                    }
                    InstData::CallImport { import, args } => {
                        let c = v.callable(*import).ok_or(AbortReason::HostContract)?;
                        self.spend(c.cost);
                        self.check_fuel()?;
                        let a: Vec<DataValue> =
                            args.iter().map(|&x| DataValue::from_bits(ty(x), get(x))).collect();
                        let r = self.host.call(c, &a)?;
                        match (c.ret, r) {
                            (None, None) => None,
                            (Some(t), Some(r)) if r.ty() == t => Some(r.to_bits()),
                            _ => return Err(AbortReason::HostContract),
                        }
                    }
                    InstData::Jump { dest } => {
                        next = Some(dest);
                        None
                    }
                    InstData::Brif { cond, then_dest, else_dest } => {
                        next = Some(if get(*cond) != 0 { then_dest } else { else_dest });
                        None
                    }
                    InstData::Return { arg } => {
                        self.check_fuel()?;
                        return Ok(arg.map(get));
                    }
                    InstData::Abort { code } => return Err(AbortReason::Explicit(*code)),
                };
                if let (Some(r), Some(bits)) = (inst.result, result)
                    && let Some(slot) = vals.get_mut(r.index()) {
                        *slot = bits;
                    }
            }
            // The verifier guarantees every block ends in a terminator, so `next` is set.
            let dest = next.ok_or(AbortReason::HostContract)?;
            incoming = dest.args.iter().map(|x| vals.get(x.index()).copied().unwrap_or(0)).collect();
            bi = dest.block.index();
            block = f.block(dest.block).ok_or(AbortReason::HostContract)?;
        }
    }
}
