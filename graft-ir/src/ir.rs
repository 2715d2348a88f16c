//! The in-memory IR: a module of functions in SSA form with blocks and block parameters.
//!
//! These types are plain data with public fields: graftc lowers into them (usually through
//! [`crate::builder`]), the binary and text formats read and write them, and nothing here
//! checks anything: an unverified `Module` may be arbitrarily malformed. Only
//! [`crate::verify`] decides whether a module is acceptable.
//!
//! `Display` on each type prints the text format (see [`crate::text`] and
//! `docs/graft-ir.md`).

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::entity::{Block, FuncRef, ImportRef, Region, Value};
use crate::opcode::{IntCC, Opcode};
use crate::types::{Signature, Type};

/// A graft: its target graft point, resource requests, data section, imports and functions.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Module {
    /// The name of the graft point this graft implements (a row of [`crate::abi::GRAFT_POINTS`]).
    pub point: String,
    /// What the graft asks of the kernel per call.
    pub resources: Resources,
    /// Initial bytes of the data region `r0`; shorter than the region, the rest is zero.
    #[serde(deserialize_with = "crate::binary::bounded::data")]
    pub data: Vec<u8>,
    /// Imported kernel callables, named `imp0, imp1, ...` in order.
    #[serde(deserialize_with = "crate::binary::bounded::imports")]
    pub imports: Vec<Import>,
    /// Functions, named `fn0, fn1, ...` in order; `fn0` is the graft point's entry function.
    #[serde(deserialize_with = "crate::binary::bounded::functions")]
    pub functions: Vec<Function>,
}

impl Module {
    /// The entry function, the one the graft point calls.
    pub const ENTRY: FuncRef = FuncRef(0);

    /// The function `f`, if it exists.
    pub fn function(&self, f: FuncRef) -> Option<&Function> {
        self.functions.get(f.index())
    }

    /// The import `i`, if it exists.
    pub fn import(&self, i: ImportRef) -> Option<&Import> {
        self.imports.get(i.index())
    }

    /// Total instruction count over all functions (what size limits and fuel talk about).
    pub fn inst_count(&self) -> usize {
        self.functions.iter().map(Function::inst_count).sum()
    }
}

/// Resource requests. The kernel charges them to the graft's installer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Size in bytes of the data region `r0`: a power of two, at least 8.
    pub data_size: u32,
    /// Fuel granted to each call of the graft (see the fuel rules in `docs/graft-ir.md`).
    pub fuel: u64,
}

/// An imported kernel callable: a name from [`crate::abi::CALLABLES`] and the signature the
/// graft expects it to have (which must equal the ABI's).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Import {
    /// The callable's name, e.g. `fs.file_size`.
    pub name: String,
    /// The expected signature.
    pub sig: Signature,
}

/// A function: a signature and blocks, `b0` being the entry block whose parameters are the
/// function's parameters.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Function {
    /// A symbol for dumps and diagnostics (may be empty; `[A-Za-z0-9_.]`, at most 64 bytes).
    pub name: String,
    /// Parameter and return types.
    pub sig: Signature,
    /// Blocks, named `b0, b1, ...` in order.
    #[serde(deserialize_with = "crate::binary::bounded::blocks")]
    pub blocks: Vec<BlockData>,
}

impl Function {
    /// The entry block.
    pub const ENTRY: Block = Block(0);

    /// The block `b`, if it exists.
    pub fn block(&self, b: Block) -> Option<&BlockData> {
        self.blocks.get(b.index())
    }

    /// Instruction count over all blocks, terminators included.
    pub fn inst_count(&self) -> usize {
        self.blocks.iter().map(|b| b.insts.len()).sum()
    }
}

/// A basic block: parameters, then instructions of which the last (and only the last) is a
/// terminator.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct BlockData {
    /// Block parameters (the SSA phi nodes), each defining a value.
    #[serde(deserialize_with = "crate::binary::bounded::params")]
    pub params: Vec<BlockParam>,
    /// Instructions, terminator last.
    #[serde(deserialize_with = "crate::binary::bounded::insts")]
    pub insts: Vec<Inst>,
}

/// A block parameter: the value it defines and its type.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BlockParam {
    /// The value defined.
    pub value: Value,
    /// Its type.
    pub ty: Type,
}

/// An instruction: its operands and, if it produces one, the value it defines.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Inst {
    /// The result value, for instructions that produce one.
    pub result: Option<Value>,
    /// Opcode and operands.
    pub data: InstData,
}

/// A branch target with its block arguments: `b3(v1, v2)`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BlockCall {
    /// The target block.
    pub block: Block,
    /// Arguments, one per parameter of the target.
    #[serde(deserialize_with = "crate::binary::bounded::params")]
    pub args: Vec<Value>,
}

/// Opcode and operands, one variant per [`crate::opcode::Format`].
///
/// Variants that serve several opcodes carry the opcode; the verifier rejects an opcode in
/// the wrong variant (a hand-made or decoded module could contain one).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum InstData {
    /// `iconst.T imm`
    Iconst {
        /// The integer type.
        ty: Type,
        /// The constant; must fit `ty` as a signed or unsigned number.
        imm: i64,
    },
    /// `op va, vb` for the arithmetic, bitwise, shift and rotate opcodes.
    Binary {
        /// The opcode.
        op: Opcode,
        /// Left and right operands.
        args: [Value; 2],
    },
    /// `op va` (`bnot`).
    Unary {
        /// The opcode.
        op: Opcode,
        /// The operand.
        arg: Value,
    },
    /// `icmp cc va, vb`.
    Icmp {
        /// The condition.
        cond: IntCC,
        /// Left and right operands.
        args: [Value; 2],
    },
    /// `select vc, va, vb`.
    Select {
        /// Condition (i8), value if non-zero, value if zero.
        args: [Value; 3],
    },
    /// `op.T va` for `uextend`, `sextend`, `ireduce`.
    Convert {
        /// The opcode.
        op: Opcode,
        /// The result type.
        ty: Type,
        /// The operand.
        arg: Value,
    },
    /// `load.T rK[vo + imm]`.
    Load {
        /// The loaded integer type.
        ty: Type,
        /// The region read.
        region: Region,
        /// Dynamic offset (i32 or i64, zero-extended).
        offset: Value,
        /// Static offset added to it.
        imm: u32,
    },
    /// `store rK[vo + imm], vx`.
    Store {
        /// The region written.
        region: Region,
        /// Dynamic offset (i32 or i64, zero-extended).
        offset: Value,
        /// Static offset added to it.
        imm: u32,
        /// The integer stored; its type gives the access width.
        value: Value,
    },
    /// `call fnK(args)`.
    Call {
        /// The callee.
        func: FuncRef,
        /// Arguments.
        #[serde(deserialize_with = "crate::binary::bounded::params")]
        args: Vec<Value>,
    },
    /// `call_import impK(args)`.
    CallImport {
        /// The callee.
        import: ImportRef,
        /// Arguments.
        #[serde(deserialize_with = "crate::binary::bounded::params")]
        args: Vec<Value>,
    },
    /// `jump bK(args)`.
    Jump {
        /// The target.
        dest: BlockCall,
    },
    /// `brif vc, bK(args), bL(args)`.
    Brif {
        /// The i8 condition.
        cond: Value,
        /// Taken if `cond` is non-zero.
        then_dest: BlockCall,
        /// Taken if `cond` is zero.
        else_dest: BlockCall,
    },
    /// `return [v]`.
    Return {
        /// The returned value, if the function returns one.
        arg: Option<Value>,
    },
    /// `abort code`.
    Abort {
        /// The code carried by `AbortReason::Explicit`.
        code: u32,
    },
}

impl InstData {
    /// The opcode of this instruction.
    pub fn opcode(&self) -> Opcode {
        match self {
            InstData::Iconst { .. } => Opcode::Iconst,
            InstData::Binary { op, .. } | InstData::Unary { op, .. } | InstData::Convert { op, .. } => *op,
            InstData::Icmp { .. } => Opcode::Icmp,
            InstData::Select { .. } => Opcode::Select,
            InstData::Load { .. } => Opcode::Load,
            InstData::Store { .. } => Opcode::Store,
            InstData::Call { .. } => Opcode::Call,
            InstData::CallImport { .. } => Opcode::CallImport,
            InstData::Jump { .. } => Opcode::Jump,
            InstData::Brif { .. } => Opcode::Brif,
            InstData::Return { .. } => Opcode::Return,
            InstData::Abort { .. } => Opcode::Abort,
        }
    }

    /// Whether this instruction ends a block.
    pub fn is_terminator(&self) -> bool {
        self.opcode().is_terminator()
    }

    /// Every value this instruction uses, in operand order (block arguments included).
    pub fn uses(&self) -> Vec<Value> {
        let mut out = Vec::new();
        match self {
            InstData::Iconst { .. } | InstData::Abort { .. } => {}
            InstData::Binary { args, .. } | InstData::Icmp { args, .. } => out.extend_from_slice(args),
            InstData::Unary { arg, .. } | InstData::Convert { arg, .. } => out.push(*arg),
            InstData::Select { args } => out.extend_from_slice(args),
            InstData::Load { offset, .. } => out.push(*offset),
            InstData::Store { offset, value, .. } => {
                out.push(*offset);
                out.push(*value);
            }
            InstData::Call { args, .. } | InstData::CallImport { args, .. } => out.extend_from_slice(args),
            InstData::Jump { dest } => out.extend_from_slice(&dest.args),
            InstData::Brif { cond, then_dest, else_dest } => {
                out.push(*cond);
                out.extend_from_slice(&then_dest.args);
                out.extend_from_slice(&else_dest.args);
            }
            InstData::Return { arg } => out.extend(arg.iter().copied()),
        }
        out
    }

    /// The branch targets of a terminator (empty for other instructions).
    pub fn targets(&self) -> Vec<&BlockCall> {
        match self {
            InstData::Jump { dest } => alloc::vec![dest],
            InstData::Brif { then_dest, else_dest, .. } => alloc::vec![then_dest, else_dest],
            _ => Vec::new(),
        }
    }
}
