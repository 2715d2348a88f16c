//! The opcode table: every instruction of the IR, declared once.
//!
//! Each row gives the variant, its text mnemonic, its operand format (which [`InstData`]
//! variant carries it) and its doc string. The printer, the parser, the verifier, the
//! interpreter and `docs/graft-ir.md` all follow from this table.
//!
//! [`InstData`]: crate::InstData

use core::fmt;
use serde::{Deserialize, Serialize};

/// The operand layout of an opcode: which [`crate::InstData`] variant carries it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// `vN = iconst.T imm`
    Iconst,
    /// `vN = op va, vb` (both operands and the result have one integer type)
    Binary,
    /// `vN = op va`
    Unary,
    /// `vN = icmp cc va, vb`
    Icmp,
    /// `vN = select vc, va, vb`
    Select,
    /// `vN = op.T va` (extension or reduction to `T`)
    Convert,
    /// `vN = load.T rK[vo + imm]`
    Load,
    /// `store rK[vo + imm], vx`
    Store,
    /// `[vN =] call fnK(args)`
    Call,
    /// `[vN =] call_import impK(args)`
    CallImport,
    /// `jump bK(args)`
    Jump,
    /// `brif vc, bK(args), bL(args)`
    Brif,
    /// `return [v]`
    Return,
    /// `abort code`
    Abort,
}

macro_rules! opcodes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal, $format:ident; )+) => {
        /// An IR opcode. See the table in this module for each opcode's semantics.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
        pub enum Opcode {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$variant, )+ ];

            /// The text mnemonic.
            pub const fn name(self) -> &'static str {
                match self { $( Opcode::$variant => $name, )+ }
            }

            /// The operand format.
            pub const fn format(self) -> Format {
                match self { $( Opcode::$variant => Format::$format, )+ }
            }

            /// The doc string (the same text as the variant's rustdoc).
            pub const fn doc(self) -> &'static str {
                match self { $( Opcode::$variant => concat!($($doc, "\n"),+), )+ }
            }
        }
    };
}

opcodes! {
    /// `vN = iconst.T imm`: the integer constant `imm` of type `T` (i8..i64). The immediate
    /// must fit in `T` as a signed or an unsigned number.
    Iconst = "iconst", Iconst;
    /// Wrapping addition.
    Iadd = "iadd", Binary;
    /// Wrapping subtraction.
    Isub = "isub", Binary;
    /// Wrapping multiplication.
    Imul = "imul", Binary;
    /// Unsigned division; a zero divisor aborts `DivisionByZero`.
    Udiv = "udiv", Binary;
    /// Signed division rounding toward zero; a zero divisor aborts `DivisionByZero`, MIN / -1
    /// aborts `IntegerOverflow`.
    Sdiv = "sdiv", Binary;
    /// Unsigned remainder; a zero divisor aborts `DivisionByZero`.
    Urem = "urem", Binary;
    /// Signed remainder (sign of the dividend); a zero divisor aborts `DivisionByZero`,
    /// MIN % -1 aborts `IntegerOverflow`.
    Srem = "srem", Binary;
    /// Bitwise and.
    Band = "band", Binary;
    /// Bitwise or.
    Bor = "bor", Binary;
    /// Bitwise exclusive or.
    Bxor = "bxor", Binary;
    /// Bitwise not.
    Bnot = "bnot", Unary;
    /// Shift left; the amount is masked to the type width (`amt & (bits - 1)`).
    Ishl = "ishl", Binary;
    /// Logical shift right; the amount is masked to the type width.
    Ushr = "ushr", Binary;
    /// Arithmetic shift right; the amount is masked to the type width.
    Sshr = "sshr", Binary;
    /// Rotate left; the amount is taken modulo the type width.
    Rotl = "rotl", Binary;
    /// Rotate right; the amount is taken modulo the type width.
    Rotr = "rotr", Binary;
    /// `vN = icmp cc va, vb`: compare two integers (or two handles of one kind, `eq`/`ne`
    /// only); the result is an i8, 1 if the condition holds, else 0.
    Icmp = "icmp", Icmp;
    /// `vN = select vc, va, vb`: `va` if the i8 `vc` is non-zero, else `vb`; `va` and `vb`
    /// have one type (integer or handle).
    Select = "select", Select;
    /// `vN = uextend.T va`: zero-extend to the wider integer type `T`.
    Uextend = "uextend", Convert;
    /// `vN = sextend.T va`: sign-extend to the wider integer type `T`.
    Sextend = "sextend", Convert;
    /// `vN = ireduce.T va`: keep the low bits, to the narrower integer type `T`.
    Ireduce = "ireduce", Convert;
    /// `vN = load.T rK[vo + imm]`: read a little-endian integer of type `T` from region `rK`
    /// at offset `zext64(vo) + imm` (wrapping in 64 bits); `vo` is i32 or i64. On `r0` the
    /// offset is masked to `off & (size - width)`; on `r1..` it is bounds checked and an
    /// access past the end aborts `OutOfBounds`.
    Load = "load", Load;
    /// `store rK[vo + imm], vx`: write the integer `vx` little-endian, with the offset
    /// rules of `load`. The region must be writable.
    Store = "store", Store;
    /// `[vN =] call fnK(args)`: call an internal function. Entering a frame deeper than
    /// `MAX_CALL_DEPTH` aborts `CallDepthExceeded`.
    Call = "call", Call;
    /// `[vN =] call_import impK(args)`: call an imported kernel callable; costs the
    /// callable's fixed fuel cost before the call, and aborts with whatever the callable
    /// reports.
    CallImport = "call_import", CallImport;
    /// `jump bK(args)`: unconditional branch passing block arguments. A terminator.
    Jump = "jump", Jump;
    /// `brif vc, bK(args), bL(args)`: to `bK` if the i8 `vc` is non-zero, else to `bL`.
    /// A terminator.
    Brif = "brif", Brif;
    /// `return [v]`: return from the function, with a value if its signature has one.
    /// A terminator.
    Return = "return", Return;
    /// `abort code`: abort the graft with `Explicit(code)`. A terminator.
    Abort = "abort", Abort;
}

impl Opcode {
    /// The opcode whose mnemonic is `name`.
    pub fn from_name(name: &str) -> Option<Opcode> {
        Opcode::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// Whether the opcode ends a block (and may appear only there).
    pub const fn is_terminator(self) -> bool {
        matches!(
            self,
            Opcode::Jump | Opcode::Brif | Opcode::Return | Opcode::Abort
        )
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The condition of an `icmp`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum IntCC {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Signed less than.
    Slt,
    /// Signed less than or equal.
    Sle,
    /// Signed greater than.
    Sgt,
    /// Signed greater than or equal.
    Sge,
    /// Unsigned less than.
    Ult,
    /// Unsigned less than or equal.
    Ule,
    /// Unsigned greater than.
    Ugt,
    /// Unsigned greater than or equal.
    Uge,
}

impl IntCC {
    /// Every condition, in a fixed order.
    pub const ALL: [IntCC; 10] = [
        IntCC::Eq,
        IntCC::Ne,
        IntCC::Slt,
        IntCC::Sle,
        IntCC::Sgt,
        IntCC::Sge,
        IntCC::Ult,
        IntCC::Ule,
        IntCC::Ugt,
        IntCC::Uge,
    ];

    /// The text syntax.
    pub const fn name(self) -> &'static str {
        match self {
            IntCC::Eq => "eq",
            IntCC::Ne => "ne",
            IntCC::Slt => "slt",
            IntCC::Sle => "sle",
            IntCC::Sgt => "sgt",
            IntCC::Sge => "sge",
            IntCC::Ult => "ult",
            IntCC::Ule => "ule",
            IntCC::Ugt => "ugt",
            IntCC::Uge => "uge",
        }
    }

    /// The condition whose text syntax is `name`.
    pub fn from_name(name: &str) -> Option<IntCC> {
        IntCC::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for IntCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
