//! The one door to architecture code. Generic kernel code calls `arch::...` and never names
//! registers, ports or descriptor tables itself.
mod x86_64;

pub use self::x86_64::*;
