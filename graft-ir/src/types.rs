//! Value types and signatures.
//!
//! Integers are i8..i64 (booleans are i8 holding 0 or 1). Handles are opaque references to
//! kernel objects: they can be passed, stored in block parameters, selected and compared for
//! equality, but never converted to or from integers, never loaded or stored, and never
//! forged: only a callable or a graft point argument produces one.

use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// The kind of kernel object a handle refers to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum HandleKind {
    /// A physical or virtual page.
    Page,
    /// A thread.
    Thread,
    /// An open file.
    File,
    /// A graft-visible kernel lock.
    Lock,
}

impl HandleKind {
    /// Every handle kind, in a fixed order.
    pub const ALL: [HandleKind; 4] = [
        HandleKind::Page,
        HandleKind::Thread,
        HandleKind::File,
        HandleKind::Lock,
    ];

    /// The name inside `handle<...>`.
    pub const fn name(self) -> &'static str {
        match self {
            HandleKind::Page => "page",
            HandleKind::Thread => "thread",
            HandleKind::File => "file",
            HandleKind::Lock => "lock",
        }
    }

    /// The kind whose name is `name`.
    pub fn from_name(name: &str) -> Option<HandleKind> {
        HandleKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The type of an SSA value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Type {
    /// 8-bit integer; also the boolean type (0 or 1).
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// An opaque handle to a kernel object.
    Handle(HandleKind),
}

impl Type {
    /// The integer types, narrowest first.
    pub const INTS: [Type; 4] = [Type::I8, Type::I16, Type::I32, Type::I64];

    /// Whether this is an integer type.
    pub const fn is_int(self) -> bool {
        !matches!(self, Type::Handle(_))
    }

    /// Whether this is a handle type.
    pub const fn is_handle(self) -> bool {
        matches!(self, Type::Handle(_))
    }

    /// Width in bits of an integer type; handles are 64 bits wide at run time.
    pub const fn bits(self) -> u32 {
        match self {
            Type::I8 => 8,
            Type::I16 => 16,
            Type::I32 => 32,
            Type::I64 | Type::Handle(_) => 64,
        }
    }

    /// Width in bytes (the access width of a load or store of this type).
    pub const fn bytes(self) -> u32 {
        self.bits() / 8
    }

    /// Parse the text syntax (`i32`, `handle<file>`).
    pub fn from_text(s: &str) -> Option<Type> {
        match s {
            "i8" => Some(Type::I8),
            "i16" => Some(Type::I16),
            "i32" => Some(Type::I32),
            "i64" => Some(Type::I64),
            _ => {
                let inner = s.strip_prefix("handle<")?.strip_suffix('>')?;
                HandleKind::from_name(inner).map(Type::Handle)
            }
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::I8 => f.write_str("i8"),
            Type::I16 => f.write_str("i16"),
            Type::I32 => f.write_str("i32"),
            Type::I64 => f.write_str("i64"),
            Type::Handle(k) => write!(f, "handle<{}>", k.name()),
        }
    }
}

/// A function or import signature: parameter types and an optional return type.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub struct Signature {
    /// Parameter types, in order.
    #[serde(deserialize_with = "crate::binary::bounded::params")]
    pub params: Vec<Type>,
    /// The return type; `None` for a function that returns nothing.
    pub ret: Option<Type>,
}

impl Signature {
    /// A signature from parameter types and a return type.
    pub fn new(params: &[Type], ret: Option<Type>) -> Self {
        Signature { params: params.to_vec(), ret }
    }
}

/// Text syntax: `(i32, handle<file>) -> i64`, or `(i64)` when nothing is returned.
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        f.write_str(")")?;
        if let Some(r) = self.ret {
            write!(f, " -> {r}")?;
        }
        Ok(())
    }
}
