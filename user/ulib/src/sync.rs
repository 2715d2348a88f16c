//! Blocking synchronization built on futexes: [`Mutex`], [`Condvar`] and [`Semaphore`].
//!
//! The futex protocol is the classic one (Drepper, "Futexes Are Tricky"): the fast path is
//! one atomic operation, and the kernel is entered only when there may be waiters.

use crate::sys;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};
use sysabi::Error;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and some thread may be sleeping on the futex.
const CONTENDED: u32 = 2;

/// Sleeps on `word` while it holds `expected`. Spurious returns are fine for every caller
/// here (they all re-check); a kernel that lacks futexes degrades to yielding.
fn wait_on(word: &AtomicU32, expected: u32) {
    match sys::futex_wait(word, expected, 0) {
        Ok(()) | Err(Error::WouldBlock) | Err(Error::TimedOut) => {}
        Err(_) => sys::yield_now(),
    }
}

fn wake(word: &AtomicU32, count: u32) {
    // Waking has nobody to report failure to; a waiter that missed it re-checks on its own
    // time-out or wake-up.
    let _ = sys::futex_wake(word, count);
}

/// A mutual-exclusion lock protecting a `T`.
pub struct Mutex<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the lock gives one thread at a time access to the value.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves the value.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Mutex { state: AtomicU32::new(UNLOCKED), value: UnsafeCell::new(value) }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            // Announce a waiter (CONTENDED) whenever we go to sleep, so that unlock wakes us.
            while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
                wait_on(&self.state, CONTENDED);
            }
        }
        MutexGuard { mutex: self }
    }

    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| MutexGuard { mutex: self })
    }

    fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            wake(&self.state, 1);
        }
    }
}

/// Access to a locked [`Mutex`]'s value; unlocks when dropped.
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock, and `&mut self` that this is the only reference through it.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

/// A condition variable used with a [`Mutex`]: a sequence number that notifiers bump.
pub struct Condvar {
    seq: AtomicU32,
}

impl Condvar {
    pub const fn new() -> Self {
        Condvar { seq: AtomicU32::new(0) }
    }

    /// Unlocks, sleeps until notified (or spuriously), and locks again.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let mutex = guard.mutex;
        // Read the sequence before unlocking: a notify after the unlock changes it, and the
        // futex then refuses to sleep.
        let seq = self.seq.load(Ordering::Acquire);
        drop(guard);
        wait_on(&self.seq, seq);
        mutex.lock()
    }

    /// Waits until `ready` holds for the protected value.
    pub fn wait_while<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut waiting: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while waiting(&mut guard) {
            guard = self.wait(guard);
        }
        guard
    }

    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        wake(&self.seq, 1);
    }

    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::Release);
        wake(&self.seq, u32::MAX >> 1);
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}

/// A counting semaphore.
pub struct Semaphore {
    count: AtomicU32,
}

impl Semaphore {
    pub const fn new(count: u32) -> Self {
        Semaphore { count: AtomicU32::new(count) }
    }

    /// Takes one unit, sleeping while there is none.
    pub fn acquire(&self) {
        loop {
            let c = self.count.load(Ordering::Acquire);
            if c == 0 {
                wait_on(&self.count, 0);
            } else if self
                .count
                .compare_exchange(c, c - 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Gives back one unit and wakes a waiter.
    pub fn release(&self) {
        self.count.fetch_add(1, Ordering::Release);
        wake(&self.count, 1);
    }
}
