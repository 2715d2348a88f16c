//! The names of processes and threads.
use core::fmt;

/// A process: an address space, its threads, and the unit grafts are installed by, charged to
/// and confined to. Also the scheduler's group: a process's threads share its turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(pub u32);

impl ProcessId {
    /// The process a system-call argument names; `None` if the value cannot be a process id
    /// (it does not fit the id's width: never truncated).
    pub fn from_arg(raw: u64) -> Option<ProcessId> {
        u32::try_from(raw).ok().map(ProcessId)
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "process {}", self.0)
    }
}

/// A thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(pub u32);

/// The boot context, which becomes the idle loop: not a real thread, never queued.
pub const IDLE: Tid = Tid(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_system_call_arguments_are_never_truncated() {
        assert_eq!(ProcessId::from_arg(7), Some(ProcessId(7)));
        assert_eq!(ProcessId::from_arg(u64::from(u32::MAX)), Some(ProcessId(u32::MAX)));
        assert_eq!(ProcessId::from_arg((1 << 32) | 7), None);
    }
}
