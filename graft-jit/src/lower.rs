//! Lowering: one verified graft IR function to one Cranelift IR function.
//!
//! The IR is SSA with block parameters, like Cranelift's, so values and blocks map one to
//! one. Reachable blocks are lowered in reverse post-order, which puts every definition
//! before its uses (the verifier guarantees dominance in reachable blocks); unreachable
//! blocks are never run, so they are not lowered at all.
//!
//! Added during lowering (each a trap with a code from [`crate::trap::codes`]):
//! - **fuel**: the running count lives in a Cranelift variable (a register), loaded from the
//!   context at function entry and after internal calls. Every block subtracts its
//!   instruction count, an import call the callable's cost; the count is checked (`< 0`
//!   traps `OutOfFuel`) only at the blocks [`graft_ir::interp::fuel_check_blocks`] names
//!   (the entry block and the targets of retreating edges), after an import's cost, before a
//!   call and at a return, exactly where the interpreter checks. It is written back to the
//!   context before import and internal calls, at returns, and on the way to every other
//!   trap (`max(count, 0)`, from a cold block); `enter` zeroes it after `OutOfFuel`;
//! - **memory**: on `r0`, the offset is masked with the constant `size - width`; on `rk`,
//!   `off >= bound_w` traps, where `bound_w = len - (w - 1)` (0 if `len < w`) is computed
//!   once per function entry from the context's descriptor;
//! - **division**: explicit zero and `MIN / -1` guards, so the hardware never raises `#DE`;
//! - **calls**: the depth counter in the context is checked and bumped around every internal
//!   call, and every prologue checks the stack limit;
//! - **imports**: the abort slot is tested after every import call.
//!
//! Shifts and rotates need nothing: Cranelift's take the amount modulo the width, as the IR's.

use alloc::borrow::Cow;
use alloc::vec;
use alloc::vec::Vec;

use cranelift_codegen::ir::condcodes::IntCC as ClCC;
use cranelift_codegen::ir::immediates::Offset32;
use cranelift_codegen::ir::{
    self, AbiParam, TrapCode, AliasRegionData, ArgumentPurpose, BlockArg, Endianness, GlobalValueData, InstBuilder,
    MemFlagsData, SigRef, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use graft_ir::abi::Callable;
use graft_ir::interp::{fuel_check_blocks, reverse_post_order};
use graft_ir::limits::MAX_CALL_DEPTH;
use graft_ir::{AbortReason, Block, FuncRef, InstData, IntCC, Opcode, Region, Type, Value, Verified};

use crate::context::{MAX_REGIONS, offsets};
use crate::error::{JitError, Unit};
use crate::trap::{codes, user};

/// Which sandbox checks to emit. Always both, except in the benchmark-only build that
/// measures what they cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checks {
    pub memory: bool,
    pub fuel: bool,
}

impl Checks {
    #[cfg_attr(feature = "bench-unchecked", allow(dead_code))]
    pub const ALL: Checks = Checks { memory: true, fuel: true };
}

/// The Cranelift type of an IR type (handles are 64-bit names).
pub(crate) fn cl_type(t: Type) -> types::Type {
    match t {
        Type::I8 => types::I8,
        Type::I16 => types::I16,
        Type::I32 => types::I32,
        Type::I64 | Type::Handle(_) => types::I64,
    }
}

fn vmctx_param() -> AbiParam {
    AbiParam::special(types::I64, ArgumentPurpose::VMContext)
}

/// The machine signature of a graft function: the context, then the IR parameters.
pub(crate) fn function_signature(sig: &graft_ir::Signature) -> ir::Signature {
    let mut s = ir::Signature::new(CallConv::SystemV);
    s.params.push(vmctx_param());
    s.params.extend(sig.params.iter().map(|&t| AbiParam::new(cl_type(t))));
    s.returns.extend(sig.ret.map(|t| AbiParam::new(cl_type(t))));
    s
}

/// The machine signature of an import (see [`crate::ImportFn`]).
fn import_signature(c: &Callable) -> ir::Signature {
    let mut s = ir::Signature::new(CallConv::SystemV);
    s.params.push(AbiParam::new(types::I64));
    s.params.extend(c.params.iter().map(|_| AbiParam::new(types::I64)));
    s.returns.push(AbiParam::new(types::I64));
    s
}

fn bits_mask(bits: u32) -> u64 {
    if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

/// Memory flags and the prologue pieces every lowered function shares.
struct Common {
    ctx: ir::Value,
    /// Context fields compiled code writes (fuel, depth, abort).
    ctx_rw: MemFlagsData,
    /// Context fields constant during a call (bases, lengths, tables).
    ctx_ro: MemFlagsData,
    /// Region accesses, already checked (or masked) by the lowering.
    graft_mem: MemFlagsData,
}

fn common(b: &mut FunctionBuilder<'_>, ctx: ir::Value) -> Common {
    let ctx_region = b.func.dfg.alias_regions.insert(AliasRegionData { user_id: 1, description: Cow::Borrowed("graft context") });
    let mem_region = b.func.dfg.alias_regions.insert(AliasRegionData { user_id: 2, description: Cow::Borrowed("graft regions") });
    let ctx_rw = MemFlagsData::trusted().with_alias_region(Some(ctx_region));
    Common {
        ctx,
        ctx_rw,
        ctx_ro: ctx_rw.with_readonly(),
        graft_mem: MemFlagsData::new()
            .with_notrap()
            .with_endianness(Endianness::Little)
            .with_alias_region(Some(mem_region)),
    }
}

/// Make every prologue check the stack pointer against `Context::stack_limit`.
fn set_stack_limit(b: &mut FunctionBuilder<'_>) -> Result<(), ()> {
    let vmctx = b.create_global_value(GlobalValueData::VMContext);
    let flags = b.func.dfg.mem_flags.insert(MemFlagsData::trusted().with_readonly()).map_err(|_| ())?;
    let limit = b.create_global_value(GlobalValueData::Load {
        base: vmctx,
        offset: Offset32::new(offsets::STACK_LIMIT),
        global_type: types::I64,
        flags,
    });
    b.func.stack_limit = Some(limit);
    Ok(())
}

/// What a function's body needs loaded from the context once, at entry.
#[derive(Default)]
struct Needs {
    data: bool,
    /// `widths[k][log2 w]`: region `r(k+1)` is accessed with width `w`.
    widths: [[bool; 4]; MAX_REGIONS],
    functions: bool,
    imports: bool,
}

fn width_index(bytes: u32) -> usize {
    bytes.trailing_zeros() as usize
}

struct Lower<'a, 'f> {
    b: FunctionBuilder<'f>,
    v: &'a Verified,
    unit: Unit,
    types: &'a [Type],
    vals: Vec<Option<ir::Value>>,
    blocks: Vec<Option<ir::Block>>,
    c: Common,
    checks: Checks,
    data_size: u64,
    data_base: Option<ir::Value>,
    region_base: [Option<ir::Value>; MAX_REGIONS],
    bounds: [[Option<ir::Value>; 4]; MAX_REGIONS],
    func_table: Option<ir::Value>,
    import_table: Option<ir::Value>,
    func_sigs: Vec<Option<SigRef>>,
    import_sigs: Vec<Option<SigRef>>,
    /// The running fuel count (i64; below zero only between two checks).
    fuel: Variable,
    /// Region checks already made in the current IR block, as `(region, offset value, imm,
    /// width)`: a repeated access (a load and a store of one element) is not checked twice.
    /// Cranelift would merge two identical `trapnz`, but not two branches to cold blocks.
    checked: Vec<(Region, Value, u32, u32)>,
}

/// Lower graft function `fref` into `func` (whose signature is already set).
pub(crate) fn lower_function(
    v: &Verified,
    fref: FuncRef,
    func: &mut ir::Function,
    fctx: &mut FunctionBuilderContext,
    frontend: TargetFrontendConfig,
    checks: Checks,
) -> Result<(), JitError> {
    let unit = Unit::Function(fref);
    let internal = |what| JitError::Internal { unit, what };
    let f = v.module().function(fref).ok_or(internal("function missing"))?;
    let types = v.value_types(fref);
    let order = reverse_post_order(f);

    let mut b = FunctionBuilder::new(func, fctx);
    set_stack_limit(&mut b).map_err(|()| internal("too many memory flag sets"))?;

    // Blocks and their parameters first: branches may target blocks lowered later.
    let mut blocks = vec![None; f.blocks.len()];
    let mut vals = vec![None; types.len()];
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    let entry_params = b.block_params(entry).to_vec();
    let ctx = entry_params[0];
    for &blk in &order {
        let data = &f.blocks[blk.index()];
        let cl = if blk == Block(0) {
            if entry_params.len() != data.params.len() + 1 {
                return Err(internal("entry block parameters differ from the signature"));
            }
            for (p, &x) in data.params.iter().zip(&entry_params[1..]) {
                *vals.get_mut(p.value.index()).ok_or(internal("value out of range"))? = Some(x);
            }
            entry
        } else {
            let cl = b.create_block();
            for p in &data.params {
                let x = b.append_block_param(cl, cl_type(p.ty));
                *vals.get_mut(p.value.index()).ok_or(internal("value out of range"))? = Some(x);
            }
            cl
        };
        blocks[blk.index()] = Some(cl);
    }
    if order.first() != Some(&Block(0)) {
        return Err(internal("entry block is not first in reverse post-order"));
    }

    let c = common(&mut b, ctx);
    let fuel = b.declare_var(types::I64);
    let mut l = Lower {
        b,
        v,
        unit,
        types,
        vals,
        blocks,
        c,
        checks,
        data_size: u64::from(v.module().resources.data_size),
        data_base: None,
        region_base: [None; MAX_REGIONS],
        bounds: [[None; 4]; MAX_REGIONS],
        func_table: None,
        import_table: None,
        func_sigs: vec![None; v.module().functions.len()],
        import_sigs: vec![None; graft_ir::abi::CALLABLES.len()],
        fuel,
        checked: Vec::new(),
    };

    l.b.switch_to_block(entry);
    let needs = l.scan(f, &order)?;
    l.entry_loads(&needs);
    l.load_fuel();
    let fuel_checks = fuel_check_blocks(f);
    for &blk in &order {
        let cl = l.blocks[blk.index()].ok_or(internal("block not created"))?;
        if blk != Block(0) {
            l.b.switch_to_block(cl);
        }
        let data = &f.blocks[blk.index()];
        l.checked.clear();
        l.spend(data.insts.len() as u64);
        if fuel_checks.get(blk.index()).copied().unwrap_or(true) {
            l.check_fuel();
        }
        for inst in &data.insts {
            l.inst(inst)?;
        }
    }
    l.b.seal_all_blocks();
    l.b.finalize(frontend);
    Ok(())
}

impl Lower<'_, '_> {
    fn internal(&self, what: &'static str) -> JitError {
        JitError::Internal { unit: self.unit, what }
    }

    fn val(&self, x: Value) -> Result<ir::Value, JitError> {
        self.vals.get(x.index()).copied().flatten().ok_or(self.internal("use of an undefined value"))
    }

    fn ty(&self, x: Value) -> Result<Type, JitError> {
        self.types.get(x.index()).copied().ok_or(self.internal("value without a type"))
    }

    fn define(&mut self, x: Option<Value>, cl: Option<ir::Value>) -> Result<(), JitError> {
        match (x, cl) {
            (Some(x), Some(cl)) => {
                let err = self.internal("value out of range");
                *self.vals.get_mut(x.index()).ok_or(err)? = Some(cl);
                Ok(())
            }
            (None, _) => Ok(()),
            (Some(_), None) => Err(self.internal("instruction has a result but produced none")),
        }
    }

    fn scan(&self, f: &graft_ir::Function, order: &[Block]) -> Result<Needs, JitError> {
        let mut n = Needs::default();
        for &blk in order {
            for inst in &f.blocks[blk.index()].insts {
                let (region, width) = match &inst.data {
                    InstData::Load { ty, region, .. } => (*region, ty.bytes()),
                    InstData::Store { region, value, .. } => (*region, self.ty(*value)?.bytes()),
                    InstData::Call { .. } => {
                        n.functions = true;
                        continue;
                    }
                    InstData::CallImport { .. } => {
                        n.imports = true;
                        continue;
                    }
                    _ => continue,
                };
                if region == Region::DATA {
                    n.data = true;
                } else {
                    let k = region.index() - 1;
                    let slot = n.widths.get_mut(k).ok_or(self.internal("region beyond the context's descriptors"))?;
                    slot[width_index(width)] = true;
                }
            }
        }
        Ok(n)
    }

    fn ctx_load(&mut self, flags: MemFlagsData, offset: i32) -> ir::Value {
        self.b.ins().load(types::I64, flags, self.c.ctx, offset)
    }

    /// Load what the body needs from the context, once, in the entry block.
    fn entry_loads(&mut self, n: &Needs) {
        let ro = self.c.ctx_ro;
        if n.data {
            self.data_base = Some(self.ctx_load(ro, offsets::DATA_BASE));
        }
        for (k, widths) in n.widths.iter().enumerate() {
            if !widths.iter().any(|&w| w) {
                continue;
            }
            let desc = offsets::REGIONS + offsets::REGION_SIZE * k as i32;
            self.region_base[k] = Some(self.ctx_load(ro, desc + offsets::REGION_BASE));
            let len = self.ctx_load(ro, desc + offsets::REGION_LEN);
            for (wi, &used) in widths.iter().enumerate() {
                if !used {
                    continue;
                }
                let extra = (1i64 << wi) - 1;
                // An access of w bytes at off is inside iff off < len - (w - 1), with the
                // bound 0 (nothing allowed) when len < w.
                let bound = if extra == 0 {
                    len
                } else {
                    let fits = self.b.ins().icmp_imm_u(ClCC::UnsignedGreaterThan, len, extra);
                    let rest = self.b.ins().iadd_imm_s(len, -extra);
                    let zero = self.b.ins().iconst(types::I64, 0);
                    self.b.ins().select(fits, rest, zero)
                };
                self.bounds[k][wi] = Some(bound);
            }
        }
        if n.functions {
            self.func_table = Some(self.ctx_load(ro, offsets::FUNCTIONS));
        }
        if n.imports {
            self.import_table = Some(self.ctx_load(ro, offsets::IMPORTS));
        }
    }

    /// The running count := `ctx.fuel` (at entry, and after an internal call, which leaves
    /// its count there).
    fn load_fuel(&mut self) {
        if self.checks.fuel {
            let f = self.ctx_load(self.c.ctx_rw, offsets::FUEL);
            self.b.def_var(self.fuel, f);
        }
    }

    /// `ctx.fuel` := the running count, at a point where it is known not to be below zero.
    fn store_fuel(&mut self) {
        if self.checks.fuel {
            let f = self.b.use_var(self.fuel);
            self.b.ins().store(self.c.ctx_rw, f, self.c.ctx, offsets::FUEL);
        }
    }

    /// Subtract `cost` from the running count, without a check.
    fn spend(&mut self, cost: u64) {
        if !self.checks.fuel || cost == 0 {
            return;
        }
        let f = self.b.use_var(self.fuel);
        // Costs are block lengths and callable costs: far below 2^63.
        let left = self.b.ins().iadd_imm_s(f, -(cost as i64));
        self.b.def_var(self.fuel, left);
    }

    /// A fuel check: trap `OutOfFuel` if the count is below zero (`enter` then leaves 0 in
    /// the context, as the interpreter does).
    fn check_fuel(&mut self) {
        if !self.checks.fuel {
            return;
        }
        let f = self.b.use_var(self.fuel);
        let short = self.b.ins().icmp_imm_s(ClCC::SignedLessThan, f, 0);
        self.b.ins().trapnz(short, user(codes::OUT_OF_FUEL));
    }

    /// Trap with `code` if `cond` is non-zero, after writing `max(count, 0)` to `ctx.fuel`
    /// (from a cold block, so the path that does not trap is one compare and branch, as a
    /// plain `trapnz`).
    fn trap_if(&mut self, cond: ir::Value, code: TrapCode) {
        if !self.checks.fuel {
            self.b.ins().trapnz(cond, code);
            return;
        }
        let cold = self.b.create_block();
        let cont = self.b.create_block();
        self.b.set_cold_block(cold);
        self.b.ins().brif(cond, cold, &[], cont, &[]);
        self.b.seal_block(cold);
        self.b.seal_block(cont);
        self.b.switch_to_block(cold);
        self.store_fuel_clamped();
        self.b.ins().trap(code);
        self.b.switch_to_block(cont);
    }

    /// `ctx.fuel` := `max(count, 0)`, on the way to an abort.
    fn store_fuel_clamped(&mut self) {
        if !self.checks.fuel {
            return;
        }
        let f = self.b.use_var(self.fuel);
        let zero = self.b.ins().iconst(types::I64, 0);
        let left = self.b.ins().smax(f, zero);
        self.b.ins().store(self.c.ctx_rw, left, self.c.ctx, offsets::FUEL);
    }

    fn block_args(&self, args: &[Value]) -> Result<Vec<BlockArg>, JitError> {
        args.iter().map(|&a| self.val(a).map(BlockArg::Value)).collect()
    }

    fn target(&self, blk: Block) -> Result<ir::Block, JitError> {
        self.blocks.get(blk.index()).copied().flatten().ok_or(self.internal("branch to a block that was not lowered"))
    }

    /// The address of a `width`-byte access to `region` at `zext64(offset) + imm`, after
    /// the region's check.
    fn address(&mut self, region: Region, offset: Value, imm: u32, width: u32) -> Result<ir::Value, JitError> {
        let mut off = self.val(offset)?;
        match self.ty(offset)? {
            Type::I64 => {}
            Type::I32 => off = self.b.ins().uextend(types::I64, off),
            _ => return Err(self.internal("offset is neither i32 nor i64")),
        }
        if imm != 0 {
            off = self.b.ins().iadd_imm_u(off, i64::from(imm));
        }
        if region == Region::DATA {
            let base = self.data_base.ok_or(self.internal("data base not loaded"))?;
            if self.checks.memory {
                // Wraps into the region: the verifier guarantees size >= width.
                off = self.b.ins().band_imm_u(off, (self.data_size - u64::from(width)) as i64);
            }
            return Ok(self.b.ins().iadd(base, off));
        }
        let k = region.index() - 1;
        let base = self.region_base.get(k).copied().flatten().ok_or(self.internal("region base not loaded"))?;
        if self.checks.memory && !self.checked.contains(&(region, offset, imm, width)) {
            let bound = self.bounds[k][width_index(width)].ok_or(self.internal("region bound not computed"))?;
            let outside = self.b.ins().icmp(ClCC::UnsignedGreaterThanOrEqual, off, bound);
            self.trap_if(outside, user(codes::OUT_OF_BOUNDS));
            self.checked.push((region, offset, imm, width));
        }
        Ok(self.b.ins().iadd(base, off))
    }

    fn binary(&mut self, op: Opcode, a: ir::Value, b: ir::Value, ty: Type) -> Result<ir::Value, JitError> {
        Ok(match op {
            Opcode::Iadd => self.b.ins().iadd(a, b),
            Opcode::Isub => self.b.ins().isub(a, b),
            Opcode::Imul => self.b.ins().imul(a, b),
            Opcode::Band => self.b.ins().band(a, b),
            Opcode::Bor => self.b.ins().bor(a, b),
            Opcode::Bxor => self.b.ins().bxor(a, b),
            Opcode::Ishl => self.b.ins().ishl(a, b),
            Opcode::Ushr => self.b.ins().ushr(a, b),
            Opcode::Sshr => self.b.ins().sshr(a, b),
            Opcode::Rotl => self.b.ins().rotl(a, b),
            Opcode::Rotr => self.b.ins().rotr(a, b),
            Opcode::Udiv | Opcode::Urem | Opcode::Sdiv | Opcode::Srem => {
                let zero = self.b.ins().icmp_imm_u(ClCC::Equal, b, 0);
                self.trap_if(zero, user(codes::DIVISION_BY_ZERO));
                if matches!(op, Opcode::Sdiv | Opcode::Srem) {
                    let bits = ty.bits();
                    let cty = cl_type(ty);
                    let min = self.b.ins().iconst(cty, (1u64 << (bits - 1)) as i64);
                    let minus_one = self.b.ins().iconst(cty, bits_mask(bits) as i64);
                    let a_min = self.b.ins().icmp(ClCC::Equal, a, min);
                    let b_m1 = self.b.ins().icmp(ClCC::Equal, b, minus_one);
                    let both = self.b.ins().band(a_min, b_m1);
                    self.trap_if(both, user(codes::INTEGER_OVERFLOW));
                }
                match op {
                    Opcode::Udiv => self.b.ins().udiv(a, b),
                    Opcode::Urem => self.b.ins().urem(a, b),
                    Opcode::Sdiv => self.b.ins().sdiv(a, b),
                    _ => self.b.ins().srem(a, b),
                }
            }
            _ => return Err(self.internal("non-binary opcode in a binary instruction")),
        })
    }

    fn func_sig(&mut self, callee: FuncRef) -> Result<SigRef, JitError> {
        let slot = self.func_sigs.get(callee.index()).ok_or(self.internal("call to a missing function"))?;
        if let Some(s) = slot {
            return Ok(*s);
        }
        let f = self.v.module().function(callee).ok_or(self.internal("call to a missing function"))?;
        let s = self.b.import_signature(function_signature(&f.sig));
        self.func_sigs[callee.index()] = Some(s);
        Ok(s)
    }

    fn import_sig(&mut self, c: &Callable) -> Result<SigRef, JitError> {
        let i = usize::from(c.id);
        let slot = self.import_sigs.get(i).ok_or(self.internal("callable id outside the ABI table"))?;
        if let Some(s) = slot {
            return Ok(*s);
        }
        let s = self.b.import_signature(import_signature(c));
        self.import_sigs[i] = Some(s);
        Ok(s)
    }

    fn call(&mut self, callee: FuncRef, args: &[Value]) -> Result<Option<ir::Value>, JitError> {
        let rw = self.c.ctx_rw;
        let ctx = self.c.ctx;
        // A call checks the fuel, then hands the count to the callee through the context
        // (which the depth trap then finds right as well).
        self.check_fuel();
        self.store_fuel();
        let depth = self.ctx_load(rw, offsets::DEPTH);
        let too_deep = self.b.ins().icmp_imm_u(ClCC::UnsignedGreaterThanOrEqual, depth, i64::from(MAX_CALL_DEPTH));
        self.b.ins().trapnz(too_deep, user(codes::CALL_DEPTH));
        let deeper = self.b.ins().iadd_imm_s(depth, 1);
        self.b.ins().store(rw, deeper, ctx, offsets::DEPTH);

        let table = self.func_table.ok_or(self.internal("function table not loaded"))?;
        // At most MAX_FUNCTIONS entries of 8 bytes: the offset fits easily.
        let entry = (callee.index() * 8) as i32;
        let target = self.b.ins().load(types::I64, self.c.ctx_ro, table, entry);
        let sig = self.func_sig(callee)?;
        let mut cargs = Vec::with_capacity(args.len() + 1);
        cargs.push(ctx);
        for &a in args {
            cargs.push(self.val(a)?);
        }
        let call = self.b.ins().call_indirect(sig, target, &cargs);
        let result = self.b.inst_results(call).first().copied();
        self.b.ins().store(rw, depth, ctx, offsets::DEPTH);
        self.load_fuel();
        Ok(result)
    }

    fn call_import(&mut self, import: graft_ir::ImportRef, args: &[Value]) -> Result<Option<ir::Value>, JitError> {
        let c = self.v.callable(import).ok_or(self.internal("import without a callable"))?;
        self.spend(c.cost);
        self.check_fuel();
        // The import and the abort-slot trap after it see the count in the context.
        self.store_fuel();
        let table = self.import_table.ok_or(self.internal("import table not loaded"))?;
        let target = self.b.ins().load(types::I64, self.c.ctx_ro, table, i32::from(c.id) * 8);
        let sig = self.import_sig(c)?;
        let mut cargs = Vec::with_capacity(args.len() + 1);
        cargs.push(self.c.ctx);
        for &a in args {
            let x = self.val(a)?;
            let t = self.ty(a)?;
            cargs.push(if t.bits() < 64 { self.b.ins().sextend(types::I64, x) } else { x });
        }
        let call = self.b.ins().call_indirect(sig, target, &cargs);
        let raw = self.b.inst_results(call).first().copied().ok_or(self.internal("import call without a result"))?;
        let rw = self.c.ctx_rw;
        let failed = self.ctx_load(rw, offsets::ABORT);
        self.b.ins().trapnz(failed, user(codes::IMPORT_FAILED));
        Ok(match c.ret {
            None => None,
            Some(t) if t.bits() < 64 => Some(self.b.ins().ireduce(cl_type(t), raw)),
            Some(_) => Some(raw),
        })
    }

    fn inst(&mut self, inst: &graft_ir::Inst) -> Result<(), JitError> {
        let result = match &inst.data {
            InstData::Iconst { ty, imm } => {
                let bits = *imm as u64 & bits_mask(ty.bits());
                Some(self.b.ins().iconst(cl_type(*ty), bits as i64))
            }
            InstData::Binary { op, args } => {
                let (a, b) = (self.val(args[0])?, self.val(args[1])?);
                let ty = self.ty(args[0])?;
                Some(self.binary(*op, a, b, ty)?)
            }
            InstData::Unary { arg, .. } => {
                let a = self.val(*arg)?;
                Some(self.b.ins().bnot(a))
            }
            InstData::Icmp { cond, args } => {
                let (a, b) = (self.val(args[0])?, self.val(args[1])?);
                Some(self.b.ins().icmp(cond_code(*cond), a, b))
            }
            InstData::Select { args } => {
                let (c, a, b) = (self.val(args[0])?, self.val(args[1])?, self.val(args[2])?);
                Some(self.b.ins().select(c, a, b))
            }
            InstData::Convert { op, ty, arg } => {
                let a = self.val(*arg)?;
                let (from, to) = (self.ty(*arg)?.bits(), ty.bits());
                let cty = cl_type(*ty);
                Some(match op {
                    Opcode::Uextend if to > from => self.b.ins().uextend(cty, a),
                    Opcode::Sextend if to > from => self.b.ins().sextend(cty, a),
                    Opcode::Ireduce if to < from => self.b.ins().ireduce(cty, a),
                    Opcode::Uextend | Opcode::Sextend | Opcode::Ireduce => a,
                    _ => return Err(self.internal("non-conversion opcode in a conversion")),
                })
            }
            InstData::Load { ty, region, offset, imm } => {
                let addr = self.address(*region, *offset, *imm, ty.bytes())?;
                Some(self.b.ins().load(cl_type(*ty), self.c.graft_mem, addr, 0))
            }
            InstData::Store { region, offset, imm, value } => {
                let x = self.val(*value)?;
                let width = self.ty(*value)?.bytes();
                let addr = self.address(*region, *offset, *imm, width)?;
                self.b.ins().store(self.c.graft_mem, x, addr, 0);
                None
            }
            InstData::Call { func, args } => self.call(*func, args)?,
            InstData::CallImport { import, args } => self.call_import(*import, args)?,
            InstData::Jump { dest } => {
                let (t, args) = (self.target(dest.block)?, self.block_args(&dest.args)?);
                self.b.ins().jump(t, &args);
                None
            }
            InstData::Brif { cond, then_dest, else_dest } => {
                let c = self.val(*cond)?;
                let (t, targs) = (self.target(then_dest.block)?, self.block_args(&then_dest.args)?);
                let (e, eargs) = (self.target(else_dest.block)?, self.block_args(&else_dest.args)?);
                self.b.ins().brif(c, t, &targs, e, &eargs);
                None
            }
            InstData::Return { arg } => {
                self.check_fuel();
                self.store_fuel();
                match arg {
                    Some(a) => {
                        let x = self.val(*a)?;
                        self.b.ins().return_(&[x]);
                    }
                    None => {
                        self.b.ins().return_(&[]);
                    }
                }
                None
            }
            InstData::Abort { code } => {
                self.store_fuel_clamped();
                let packed = self.b.ins().iconst(types::I64, AbortReason::Explicit(*code).to_u64() as i64);
                self.b.ins().store(self.c.ctx_rw, packed, self.c.ctx, offsets::ABORT);
                self.b.ins().trap(user(codes::EXPLICIT));
                None
            }
        };
        self.define(inst.result, result)
    }
}

fn cond_code(cc: IntCC) -> ClCC {
    match cc {
        IntCC::Eq => ClCC::Equal,
        IntCC::Ne => ClCC::NotEqual,
        IntCC::Slt => ClCC::SignedLessThan,
        IntCC::Sle => ClCC::SignedLessThanOrEqual,
        IntCC::Sgt => ClCC::SignedGreaterThan,
        IntCC::Sge => ClCC::SignedGreaterThanOrEqual,
        IntCC::Ult => ClCC::UnsignedLessThan,
        IntCC::Ule => ClCC::UnsignedLessThanOrEqual,
        IntCC::Ugt => ClCC::UnsignedGreaterThan,
        IntCC::Uge => ClCC::UnsignedGreaterThanOrEqual,
    }
}

