//! Entity references: small `u32` newtypes naming things inside a module.
//!
//! Their `Display` is their text syntax (`fn0`, `b2`, `v7`, `r0`, `imp1`), so dumps, verifier
//! logs and test files all speak one language. An entity is only an index; whether it names
//! something that exists is for the verifier to say.

use core::fmt;
use serde::{Deserialize, Serialize};

macro_rules! entity {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl $name {
            /// The text prefix before the number (`
            #[doc = $prefix]
            /// `).
            pub const PREFIX: &'static str = $prefix;

            /// The entity with this index.
            pub const fn new(index: u32) -> Self {
                Self(index)
            }

            /// The index, for indexing the owning vector.
            pub const fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

entity!(
    /// A function of the module (`fn0` is the graft point's entry function).
    FuncRef,
    "fn"
);
entity!(
    /// A basic block of a function (`b0` is the function's entry block).
    Block,
    "b"
);
entity!(
    /// An SSA value of a function: a block parameter or an instruction result.
    Value,
    "v"
);
entity!(
    /// A memory region: `r0` is the graft's data region, `r1..` the buffers the graft point
    /// passes in.
    Region,
    "r"
);
entity!(
    /// An imported kernel callable, by its position in the module's import list.
    ImportRef,
    "imp"
);

impl Region {
    /// The graft's own data region.
    pub const DATA: Region = Region(0);
}
