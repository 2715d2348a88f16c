//! Trap codes and the trap table: how a faulting instruction maps back to an abort reason.
//!
//! Every check the lowering inserts ends in a Cranelift trap (`ud2` on x86-64) carrying one
//! of the user trap codes below; Cranelift's own reserved codes cover the stack-limit check
//! in every prologue and the (unreachable, because explicitly guarded) hardware division
//! faults. The trap table lists every trapping instruction of the code blob by offset.

use alloc::vec::Vec;

use cranelift_codegen::ir::TrapCode;
use graft_ir::AbortReason;

/// User trap codes. The numbers equal the [`AbortReason::code`] of the reason they stand for
/// where the reason is fixed; `Explicit` and `CallableFailed` read their payload (or, for an
/// import failure, the whole reason) from [`crate::Context::abort`].
pub mod codes {
    /// A passed-in region access past its end.
    pub const OUT_OF_BOUNDS: u8 = 1;
    /// Division or remainder by zero.
    pub const DIVISION_BY_ZERO: u8 = 2;
    /// Signed MIN / -1 or MIN % -1.
    pub const INTEGER_OVERFLOW: u8 = 3;
    /// Not enough fuel for a block or an import's cost.
    pub const OUT_OF_FUEL: u8 = 4;
    /// An internal call past `MAX_CALL_DEPTH`.
    pub const CALL_DEPTH: u8 = 5;
    /// `abort code`: the packed `Explicit(code)` is in the context's abort slot.
    pub const EXPLICIT: u8 = 6;
    /// An import failed: the reason it wrote is in the context's abort slot.
    pub const IMPORT_FAILED: u8 = 7;
}

pub(crate) fn user(code: u8) -> TrapCode {
    TrapCode::unwrap_user(code)
}

/// What a trap site means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TrapReason {
    /// This reason, always.
    Fixed(AbortReason),
    /// The reason packed in [`crate::Context::abort`] (an `abort` instruction or a failed
    /// import wrote it just before trapping).
    InContext,
}

impl TrapReason {
    /// The meaning of a Cranelift trap code, or `None` for a code the lowering never emits.
    pub fn from_trap_code(code: TrapCode) -> Option<TrapReason> {
        use TrapReason::{Fixed, InContext};
        Some(match code {
            TrapCode::STACK_OVERFLOW => Fixed(AbortReason::StackOverflow),
            TrapCode::INTEGER_OVERFLOW => Fixed(AbortReason::IntegerOverflow),
            TrapCode::INTEGER_DIVISION_BY_ZERO => Fixed(AbortReason::DivisionByZero),
            TrapCode::HEAP_OUT_OF_BOUNDS => Fixed(AbortReason::OutOfBounds),
            _ => match code.as_raw().get() {
                codes::OUT_OF_BOUNDS => Fixed(AbortReason::OutOfBounds),
                codes::DIVISION_BY_ZERO => Fixed(AbortReason::DivisionByZero),
                codes::INTEGER_OVERFLOW => Fixed(AbortReason::IntegerOverflow),
                codes::OUT_OF_FUEL => Fixed(AbortReason::OutOfFuel),
                codes::CALL_DEPTH => Fixed(AbortReason::CallDepthExceeded),
                codes::EXPLICIT | codes::IMPORT_FAILED => InContext,
                _ => return None,
            },
        })
    }
}

/// One trapping instruction: its offset in the code blob and what it means.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TrapSite {
    /// Offset of the trapping instruction from the start of the code blob.
    pub offset: u32,
    /// The reason to abort with.
    pub reason: TrapReason,
}

/// Every trap site of a code blob, sorted by offset.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TrapTable {
    sites: Vec<TrapSite>,
}

impl TrapTable {
    pub(crate) fn from_sites(mut sites: Vec<TrapSite>) -> TrapTable {
        sites.sort_by_key(|s| s.offset);
        sites.dedup_by_key(|s| s.offset);
        TrapTable { sites }
    }

    /// The site at exactly `offset` (the faulting instruction's start).
    pub fn lookup(&self, offset: u32) -> Option<TrapReason> {
        let i = self.sites.binary_search_by_key(&offset, |s| s.offset).ok()?;
        Some(self.sites[i].reason)
    }

    /// All sites, sorted by offset.
    pub fn sites(&self) -> &[TrapSite] {
        &self.sites
    }
}
