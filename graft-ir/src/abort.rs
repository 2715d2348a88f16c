//! Why a graft call was aborted: one enum for the whole project.
//!
//! The interpreter, the JIT's trap codes and the kernel's runtime all produce these. Each
//! variant has a stable numeric code ([`AbortReason::code`]); together with the payload of
//! `Explicit` and `CallableFailed` it packs into one `u64` ([`AbortReason::to_u64`]) so that
//! machine code and the kernel can pass it in a register. The codes are part of the ABI:
//! never renumber, only add.

use core::fmt;
use serde::{Deserialize, Serialize};

/// The reason a graft call was aborted (and its transaction rolled back).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum AbortReason {
    /// An access to a passed-in region went past its end. Code 1.
    OutOfBounds,
    /// An integer division or remainder by zero. Code 2.
    DivisionByZero,
    /// A signed division or remainder of the minimum value by -1. Code 3.
    IntegerOverflow,
    /// The call ran out of fuel. Code 4.
    OutOfFuel,
    /// Internal calls nested deeper than `MAX_CALL_DEPTH`. Code 5.
    CallDepthExceeded,
    /// The graft executed `abort code`. Code 6, payload `code`.
    Explicit(u32),
    /// A callable rejected its arguments (e.g. a handle that does not exist or is not the
    /// owner's); the payload is the callable's error code. Code 7.
    CallableFailed(u32),
    /// The kernel's watchdog timer fired (wall-clock budget exhausted). Code 8.
    Watchdog,
    /// A contested lock was not granted within its time-out. Code 9.
    LockTimeout,
    /// A resource charged to the installer (memory, locks held, ...) hit its limit. Code 10.
    ResourceLimit,
    /// The graft's result failed the graft point's validator. Code 11.
    InvalidResult,
    /// The native stack of the graft ran out (JIT stack-limit check). Code 12.
    StackOverflow,
    /// Granting a lock would have closed a wait cycle between transactions. Code 13.
    Deadlock,
    /// The graft was detached or its owner exited while the call was running. Code 14.
    Detached,
    /// The caller of the graft broke its contract (wrong entry arguments, a missing region,
    /// a callable returning a value of the wrong type): a kernel bug, reported instead of a
    /// panic. Code 15.
    HostContract,
}

impl AbortReason {
    /// The stable numeric code of the variant (never 0, so 0 can mean "no abort").
    pub const fn code(self) -> u32 {
        match self {
            AbortReason::OutOfBounds => 1,
            AbortReason::DivisionByZero => 2,
            AbortReason::IntegerOverflow => 3,
            AbortReason::OutOfFuel => 4,
            AbortReason::CallDepthExceeded => 5,
            AbortReason::Explicit(_) => 6,
            AbortReason::CallableFailed(_) => 7,
            AbortReason::Watchdog => 8,
            AbortReason::LockTimeout => 9,
            AbortReason::ResourceLimit => 10,
            AbortReason::InvalidResult => 11,
            AbortReason::StackOverflow => 12,
            AbortReason::Deadlock => 13,
            AbortReason::Detached => 14,
            AbortReason::HostContract => 15,
        }
    }

    /// The payload of `Explicit` and `CallableFailed`, else 0.
    pub const fn payload(self) -> u32 {
        match self {
            AbortReason::Explicit(c) | AbortReason::CallableFailed(c) => c,
            _ => 0,
        }
    }

    /// The reason from a variant code and payload; `None` for an unknown code.
    pub const fn from_code(code: u32, payload: u32) -> Option<AbortReason> {
        Some(match code {
            1 => AbortReason::OutOfBounds,
            2 => AbortReason::DivisionByZero,
            3 => AbortReason::IntegerOverflow,
            4 => AbortReason::OutOfFuel,
            5 => AbortReason::CallDepthExceeded,
            6 => AbortReason::Explicit(payload),
            7 => AbortReason::CallableFailed(payload),
            8 => AbortReason::Watchdog,
            9 => AbortReason::LockTimeout,
            10 => AbortReason::ResourceLimit,
            11 => AbortReason::InvalidResult,
            12 => AbortReason::StackOverflow,
            13 => AbortReason::Deadlock,
            14 => AbortReason::Detached,
            15 => AbortReason::HostContract,
            _ => return None,
        })
    }

    /// Packed as `code << 32 | payload`.
    pub const fn to_u64(self) -> u64 {
        ((self.code() as u64) << 32) | self.payload() as u64
    }

    /// Unpack [`AbortReason::to_u64`]; `None` for an unknown code.
    pub const fn from_u64(packed: u64) -> Option<AbortReason> {
        AbortReason::from_code((packed >> 32) as u32, packed as u32)
    }

    /// Every variant (payloads zero), for tables and tests.
    pub const ALL: [AbortReason; 15] = [
        AbortReason::OutOfBounds,
        AbortReason::DivisionByZero,
        AbortReason::IntegerOverflow,
        AbortReason::OutOfFuel,
        AbortReason::CallDepthExceeded,
        AbortReason::Explicit(0),
        AbortReason::CallableFailed(0),
        AbortReason::Watchdog,
        AbortReason::LockTimeout,
        AbortReason::ResourceLimit,
        AbortReason::InvalidResult,
        AbortReason::StackOverflow,
        AbortReason::Deadlock,
        AbortReason::Detached,
        AbortReason::HostContract,
    ];

    /// The variant name, as written in test expectations (`aborts OutOfFuel`).
    pub const fn name(self) -> &'static str {
        match self {
            AbortReason::OutOfBounds => "OutOfBounds",
            AbortReason::DivisionByZero => "DivisionByZero",
            AbortReason::IntegerOverflow => "IntegerOverflow",
            AbortReason::OutOfFuel => "OutOfFuel",
            AbortReason::CallDepthExceeded => "CallDepthExceeded",
            AbortReason::Explicit(_) => "Explicit",
            AbortReason::CallableFailed(_) => "CallableFailed",
            AbortReason::Watchdog => "Watchdog",
            AbortReason::LockTimeout => "LockTimeout",
            AbortReason::ResourceLimit => "ResourceLimit",
            AbortReason::InvalidResult => "InvalidResult",
            AbortReason::StackOverflow => "StackOverflow",
            AbortReason::Deadlock => "Deadlock",
            AbortReason::Detached => "Detached",
            AbortReason::HostContract => "HostContract",
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::OutOfBounds => f.write_str("memory access past the end of a passed-in region"),
            AbortReason::DivisionByZero => f.write_str("integer division or remainder by zero"),
            AbortReason::IntegerOverflow => f.write_str("signed division overflow (MIN / -1)"),
            AbortReason::OutOfFuel => f.write_str("out of fuel"),
            AbortReason::CallDepthExceeded => f.write_str("call depth limit exceeded"),
            AbortReason::Explicit(c) => write!(f, "graft aborted with code {c}"),
            AbortReason::CallableFailed(c) => write!(f, "kernel callable rejected its arguments (error {c})"),
            AbortReason::Watchdog => f.write_str("watchdog timer expired"),
            AbortReason::LockTimeout => f.write_str("timed out waiting for a lock"),
            AbortReason::ResourceLimit => f.write_str("resource limit exceeded"),
            AbortReason::InvalidResult => f.write_str("result rejected by the graft point's validator"),
            AbortReason::StackOverflow => f.write_str("graft stack overflow"),
            AbortReason::Deadlock => f.write_str("lock request would deadlock"),
            AbortReason::Detached => f.write_str("graft detached during the call"),
            AbortReason::HostContract => f.write_str("the kernel broke the graft calling contract"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (i, r) in AbortReason::ALL.into_iter().enumerate() {
            assert_eq!(r.code() as usize, i + 1);
            assert_eq!(AbortReason::from_u64(r.to_u64()), Some(r));
        }
        let r = AbortReason::Explicit(0xdead_beef);
        assert_eq!(AbortReason::from_u64(r.to_u64()), Some(r));
        assert_eq!(AbortReason::from_code(0, 0), None);
    }
}
