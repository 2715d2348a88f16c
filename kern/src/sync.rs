//! Small synchronisation helpers usable from code that also builds on the host.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

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


/// A reader-writer lock for tables read on every graft dispatch and changed rarely. A reader
/// enters with one atomic add and never waits for other readers (it may hold the lock for a
/// whole graft call); a writer waits until no reader is inside.
///
/// Never write while this CPU holds a read guard of the same lock: the writer would wait for
/// itself. (Dispatch holds the read side across a graft call; nothing reachable from a graft
/// changes the slot tables, and an abort's detach runs after the guard is dropped.)
pub struct ReadMostly<T> {
    /// Readers inside, plus `WRITER` while a writer is.
    state: AtomicU32,
    value: UnsafeCell<T>,
}

const WRITER: u32 = 1 << 31;

// SAFETY: readers share `&T` (T: Sync), a writer has it alone (T: Send); `state` orders them.
unsafe impl<T: Send + Sync> Sync for ReadMostly<T> {}

impl<T> ReadMostly<T> {
    pub const fn new(value: T) -> Self {
        ReadMostly { state: AtomicU32::new(0), value: UnsafeCell::new(value) }
    }

    #[inline(always)]
    pub fn read(&self) -> ReadGuard<'_, T> {
        if self.state.fetch_add(1, Ordering::Acquire) & WRITER != 0 {
            self.wait_for_writer();
        }
        ReadGuard { lock: self }
    }

    #[cold]
    fn wait_for_writer(&self) {
        loop {
            self.state.fetch_sub(1, Ordering::Relaxed);
            while self.state.load(Ordering::Relaxed) & WRITER != 0 {
                core::hint::spin_loop();
            }
            if self.state.fetch_add(1, Ordering::Acquire) & WRITER == 0 {
                return;
            }
        }
    }

    pub fn write(&self) -> WriteGuard<'_, T> {
        while self.state.compare_exchange_weak(0, WRITER, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        WriteGuard { lock: self }
    }
}

pub struct ReadGuard<'a, T> {
    lock: &'a ReadMostly<T>,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a reader is counted in `state`, so no writer is inside until it leaves.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.state.fetch_sub(1, Ordering::Release);
    }
}

pub struct WriteGuard<'a, T> {
    lock: &'a ReadMostly<T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer is alone inside (`state` was 0 when it set WRITER).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.fetch_and(!WRITER, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn readers_share_and_a_writer_waits_for_them() {
        let lock = ReadMostly::new(vec![1u32]);
        {
            let a = lock.read();
            let b = lock.read();
            assert_eq!((a[0], b[0]), (1, 1));
        }
        lock.write().push(2);
        assert_eq!(*lock.read(), vec![1, 2]);

        // Threads: writers and readers never see a half-made change.
        let lock = Arc::new(ReadMostly::new((0u64, 0u64)));
        let mut handles = Vec::new();
        for _ in 0..2 {
            let l = lock.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..20_000 {
                    let mut w = l.write();
                    *w = (i, i);
                }
            }));
        }
        for _ in 0..2 {
            let l = lock.clone();
            handles.push(std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let r = l.read();
                    assert_eq!(r.0, r.1);
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    }
}
