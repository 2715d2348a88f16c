//! Building modules from Rust: graftc's lowering and random-module generators use this.
//!
//! The builder numbers values densely (`v0, v1, ...` per function, as the verifier requires)
//! and fills in result values from the opcode and the callee's signature. It checks nothing
//! else: a built module still goes through [`crate::verify`].
//!
//! ```
//! use graft_ir::builder::ModuleBuilder;
//! use graft_ir::{IntCC, Type, Signature};
//!
//! let mut mb = ModuleBuilder::new("vm.pick_victim", 4096, 10_000);
//! let f = mb.declare_function("pick", Signature::new(&[Type::I32], Some(Type::I32)));
//! let mut fb = mb.function(f);
//! let n = fb.params()[0];
//! let zero = fb.iconst(Type::I32, 0);
//! let last = fb.iconst(Type::I32, 1);
//! let last = fb.isub(n, last);
//! let empty = fb.icmp(IntCC::Sle, n, zero);
//! let idx = fb.select(empty, zero, last);
//! fb.ret(Some(idx));
//! let module = mb.finish();
//! assert!(graft_ir::verify(module).is_ok());
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use crate::entity::{Block, FuncRef, ImportRef, Region, Value};
use crate::ir::{BlockCall, BlockData, BlockParam, Function, Import, Inst, InstData, Module, Resources};
use crate::opcode::{IntCC, Opcode};
use crate::types::{Signature, Type};

/// Builds a [`Module`].
pub struct ModuleBuilder {
    module: Module,
}

impl ModuleBuilder {
    /// A module for graft point `point` with the given data size and fuel per call.
    pub fn new(point: &str, data_size: u32, fuel: u64) -> Self {
        ModuleBuilder {
            module: Module {
                point: String::from(point),
                resources: Resources { data_size, fuel },
                ..Module::default()
            },
        }
    }

    /// Set the initial bytes of the data region.
    pub fn set_data(&mut self, bytes: &[u8]) {
        self.module.data = bytes.to_vec();
    }

    /// Import a callable by name with an explicit signature.
    pub fn import(&mut self, name: &str, sig: Signature) -> ImportRef {
        let r = ImportRef(self.module.imports.len() as u32);
        self.module.imports.push(Import { name: String::from(name), sig });
        r
    }

    /// Import a callable of the ABI table with its declared signature; `None` if the table has
    /// no callable of that name.
    pub fn import_callable(&mut self, name: &str) -> Option<ImportRef> {
        let c = crate::abi::callable(name)?;
        Some(self.import(name, c.signature()))
    }

    /// Declare a function (its body can be built later, so calls may refer forward). The
    /// first declared function is `fn0`, the entry. Its entry block `b0` is created with one
    /// parameter per signature parameter.
    pub fn declare_function(&mut self, name: &str, sig: Signature) -> FuncRef {
        let f = FuncRef(self.module.functions.len() as u32);
        let params = sig
            .params
            .iter()
            .enumerate()
            .map(|(i, &ty)| BlockParam { value: Value(i as u32), ty })
            .collect();
        self.module.functions.push(Function {
            name: String::from(name),
            sig,
            blocks: alloc::vec![BlockData { params, insts: Vec::new() }],
        });
        f
    }

    /// A builder for the body of `f`, positioned at the end of its entry block.
    ///
    /// # Panics
    /// If `f` was not returned by [`ModuleBuilder::declare_function`] on this builder (a
    /// programming error of the caller, not something input can cause).
    pub fn function(&mut self, f: FuncRef) -> FunctionBuilder<'_> {
        assert!(f.index() < self.module.functions.len(), "{f} was not declared");
        let func = &self.module.functions[f.index()];
        let next_value = func
            .blocks
            .iter()
            .map(|b| b.params.len() + b.insts.iter().filter(|i| i.result.is_some()).count())
            .sum::<usize>() as u32;
        FunctionBuilder { module: &mut self.module, func: f, block: Block(0), next_value }
    }

    /// The module as built so far.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// The finished module.
    pub fn finish(self) -> Module {
        self.module
    }
}

/// Appends blocks and instructions to one function.
pub struct FunctionBuilder<'a> {
    module: &'a mut Module,
    func: FuncRef,
    block: Block,
    next_value: u32,
}

impl FunctionBuilder<'_> {
    fn func_mut(&mut self) -> &mut Function {
        &mut self.module.functions[self.func.index()]
    }

    fn new_value(&mut self) -> Value {
        let v = Value(self.next_value);
        self.next_value += 1;
        v
    }

    /// The parameters of the function (the entry block's parameters).
    pub fn params(&self) -> Vec<Value> {
        self.module.functions[self.func.index()].blocks[0].params.iter().map(|p| p.value).collect()
    }

    /// The block instructions are appended to.
    pub fn current_block(&self) -> Block {
        self.block
    }

    /// A new empty block (not yet current).
    pub fn create_block(&mut self) -> Block {
        let func = self.func_mut();
        let b = Block(func.blocks.len() as u32);
        func.blocks.push(BlockData::default());
        b
    }

    /// Add a parameter of type `ty` to `block`.
    pub fn append_block_param(&mut self, block: Block, ty: Type) -> Value {
        let value = self.new_value();
        self.func_mut().blocks[block.index()].params.push(BlockParam { value, ty });
        value
    }

    /// Append further instructions to `block`.
    pub fn switch_to_block(&mut self, block: Block) {
        self.block = block;
    }

    /// Append an instruction with an optional result to the current block.
    pub fn inst(&mut self, data: InstData, has_result: bool) -> Option<Value> {
        let result = if has_result { Some(self.new_value()) } else { None };
        let b = self.block.index();
        self.func_mut().blocks[b].insts.push(Inst { result, data });
        result
    }

    fn value_inst(&mut self, data: InstData) -> Value {
        let v = self.new_value();
        let b = self.block.index();
        self.func_mut().blocks[b].insts.push(Inst { result: Some(v), data });
        v
    }

    /// `iconst.ty imm`
    pub fn iconst(&mut self, ty: Type, imm: i64) -> Value {
        self.value_inst(InstData::Iconst { ty, imm })
    }

    /// A binary instruction (`iadd`, ..., `rotr`).
    pub fn binary(&mut self, op: Opcode, a: Value, b: Value) -> Value {
        self.value_inst(InstData::Binary { op, args: [a, b] })
    }

    /// `iadd a, b`
    pub fn iadd(&mut self, a: Value, b: Value) -> Value {
        self.binary(Opcode::Iadd, a, b)
    }

    /// `isub a, b`
    pub fn isub(&mut self, a: Value, b: Value) -> Value {
        self.binary(Opcode::Isub, a, b)
    }

    /// `imul a, b`
    pub fn imul(&mut self, a: Value, b: Value) -> Value {
        self.binary(Opcode::Imul, a, b)
    }

    /// `bnot a`
    pub fn bnot(&mut self, a: Value) -> Value {
        self.value_inst(InstData::Unary { op: Opcode::Bnot, arg: a })
    }

    /// `icmp cond a, b`
    pub fn icmp(&mut self, cond: IntCC, a: Value, b: Value) -> Value {
        self.value_inst(InstData::Icmp { cond, args: [a, b] })
    }

    /// `select c, a, b`
    pub fn select(&mut self, c: Value, a: Value, b: Value) -> Value {
        self.value_inst(InstData::Select { args: [c, a, b] })
    }

    /// `uextend.ty`, `sextend.ty` or `ireduce.ty` of `a`.
    pub fn convert(&mut self, op: Opcode, ty: Type, a: Value) -> Value {
        self.value_inst(InstData::Convert { op, ty, arg: a })
    }

    /// `uextend.ty a`
    pub fn uextend(&mut self, ty: Type, a: Value) -> Value {
        self.convert(Opcode::Uextend, ty, a)
    }

    /// `sextend.ty a`
    pub fn sextend(&mut self, ty: Type, a: Value) -> Value {
        self.convert(Opcode::Sextend, ty, a)
    }

    /// `ireduce.ty a`
    pub fn ireduce(&mut self, ty: Type, a: Value) -> Value {
        self.convert(Opcode::Ireduce, ty, a)
    }

    /// `load.ty region[offset + imm]`
    pub fn load(&mut self, ty: Type, region: Region, offset: Value, imm: u32) -> Value {
        self.value_inst(InstData::Load { ty, region, offset, imm })
    }

    /// `store region[offset + imm], value`
    pub fn store(&mut self, region: Region, offset: Value, imm: u32, value: Value) {
        self.inst(InstData::Store { region, offset, imm, value }, false);
    }

    /// `call func(args)`; a result if `func` is declared with a return type.
    pub fn call(&mut self, func: FuncRef, args: &[Value]) -> Option<Value> {
        let has_result = self.module.function(func).is_some_and(|f| f.sig.ret.is_some());
        self.inst(InstData::Call { func, args: args.to_vec() }, has_result)
    }

    /// `call_import import(args)`; a result if the import's signature has a return type.
    pub fn call_import(&mut self, import: ImportRef, args: &[Value]) -> Option<Value> {
        let has_result = self.module.import(import).is_some_and(|i| i.sig.ret.is_some());
        self.inst(InstData::CallImport { import, args: args.to_vec() }, has_result)
    }

    /// `jump block(args)`
    pub fn jump(&mut self, block: Block, args: &[Value]) {
        self.inst(InstData::Jump { dest: BlockCall { block, args: args.to_vec() } }, false);
    }

    /// `brif cond, then_block(then_args), else_block(else_args)`
    pub fn brif(
        &mut self,
        cond: Value,
        then_block: Block,
        then_args: &[Value],
        else_block: Block,
        else_args: &[Value],
    ) {
        self.inst(
            InstData::Brif {
                cond,
                then_dest: BlockCall { block: then_block, args: then_args.to_vec() },
                else_dest: BlockCall { block: else_block, args: else_args.to_vec() },
            },
            false,
        );
    }

    /// `return [value]`
    pub fn ret(&mut self, value: Option<Value>) {
        self.inst(InstData::Return { arg: value }, false);
    }

    /// `abort code`
    pub fn abort(&mut self, code: u32) {
        self.inst(InstData::Abort { code }, false);
    }
}
