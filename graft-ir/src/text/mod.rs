//! The text format: a printer (`Display` on the IR types) and a parser.
//!
//! ```text
//! graft vm.pick_victim
//! resources data_size=4096 fuel=10000
//! data "0100"
//! import imp0 = time.now() -> i64
//!
//! function fn0 pick(i32) -> i32 {
//! b0(v0: i32):
//!     v1 = iconst.i32 0
//!     return v1
//! }
//! ```
//! `;` starts a comment that runs to the end of the line.

mod print;

pub use print::FunctionWithIndex;
mod parse;

pub use parse::{parse, ParseError, ParseErrorKind};
