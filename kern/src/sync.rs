//! Small synchronisation helpers usable from code that also builds on the host.

/// Runs `f` with interrupts held off in the kernel (so an interrupt handler can never spin on a
/// lock `f` holds); on the host, where there are no interrupts, just runs `f`.
#[inline]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_os = "none")]
    {
        crate::arch::without_interrupts(f)
    }
    #[cfg(not(target_os = "none"))]
    {
        f()
    }
}
