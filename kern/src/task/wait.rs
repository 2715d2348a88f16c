//! Waiting for events: kernel wait queues (a device's completion wakes its waiters directly from
//! the interrupt handler), futexes and console input.
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use spin::Mutex;

use super::ids::{IDLE, ProcessId, Tid};
use super::sched::block_with;
use super::table::{Blocked, Wake, tasks};
use crate::arch;

/// Threads waiting for something the kernel will signal (a disk request's completion, ...).
/// `wake_all` may be called from an interrupt handler.
pub struct WaitQueue {
    waiters: Mutex<Vec<Tid>>,
}

impl WaitQueue {
    pub const fn new() -> WaitQueue {
        WaitQueue { waiters: Mutex::new(Vec::new()) }
    }

    /// Blocks the current thread until `ready()` holds (checked with interrupts off, so a
    /// wake-up cannot slip in between the check and the block). From the idle context (no
    /// thread to block: boot code, kernel tests) it waits for interrupts instead.
    pub fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        enum Step {
            Ready,
            Woken,
            Poll,
        }
        let interrupts_were_on = arch::interrupts_enabled();
        loop {
            let step = arch::without_interrupts(|| {
                if ready() {
                    return Step::Ready;
                }
                if tasks().current == IDLE || self.waiters.lock().try_reserve(1).is_err() {
                    // No thread to block, or no memory to queue it: poll.
                    return Step::Poll;
                }
                // Room was reserved just now, with interrupts off: the push cannot allocate.
                block_with(Blocked::Queue, None, |_, tid| self.waiters.lock().push(tid));
                Step::Woken
            });
            match step {
                Step::Ready => return,
                Step::Woken => {}
                Step::Poll => {
                    arch::wait_for_interrupt();
                    if !interrupts_were_on {
                        arch::disable_interrupts();
                    }
                }
            }
        }
    }

    /// Wakes every waiter (they re-check their condition).
    pub fn wake_all(&self) {
        let waiters = arch::without_interrupts(|| core::mem::take(&mut *self.waiters.lock()));
        if waiters.is_empty() {
            return;
        }
        arch::without_interrupts(|| {
            let mut t = tasks();
            for tid in waiters {
                t.wake(tid, Wake::Event);
            }
        });
    }

    /// Threads waiting now.
    pub fn len(&self) -> usize {
        arch::without_interrupts(|| self.waiters.lock().len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Blocks the current thread on futex `addr` of its process until a `futex_wake` there or
/// `until_ns`. The caller checked the futex word under the same interrupts-off section.
pub fn futex_wait(addr: u64, until_ns: Option<u64>) -> Wake {
    block_with(Blocked::Futex { addr }, until_ns, |t, tid| {
        let Some(pid) = t.current_pid() else { return };
        t.futexes.entry((pid, addr)).or_insert_with(VecDeque::new).push_back(tid);
    })
}

/// Wakes up to `count` threads of `pid` waiting on futex `addr`, oldest first.
pub fn futex_wake(pid: ProcessId, addr: u64, count: u64) -> u64 {
    let mut t = tasks();
    let mut woken = 0;
    while woken < count {
        let Some(tid) = t.futexes.get_mut(&(pid, addr)).and_then(VecDeque::pop_front) else { break };
        // `wake` also tidies the futex's list (and drops it once empty).
        t.wake(tid, Wake::Event);
        woken += 1;
    }
    if t.futexes.get(&(pid, addr)).is_some_and(VecDeque::is_empty) {
        t.futexes.remove(&(pid, addr));
    }
    woken
}

/// Takes up to `buf.len()` bytes of console input, blocking until there is some.
pub fn console_read(buf: &mut [u8]) -> usize {
    loop {
        {
            let mut t = tasks();
            while let Some(b) = arch::serial::try_read_byte() {
                t.console_in.push_back(b);
            }
            if !t.console_in.is_empty() {
                let n = buf.len().min(t.console_in.len());
                for b in buf.iter_mut().take(n) {
                    *b = t.console_in.pop_front().unwrap_or(0);
                }
                return n;
            }
        }
        block_with(Blocked::ConsoleRead, None, |t, tid| t.console_waiters.push(tid));
    }
}

/// A lock whose waiters sleep instead of spinning: for state held across disk I/O (the file
/// system), where the holder itself may sleep. Not for interrupt handlers.
pub struct SleepLock<T> {
    held: Mutex<bool>,
    waiters: WaitQueue,
    value: core::cell::UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and `held` admits one guard at a time.
unsafe impl<T: Send> Sync for SleepLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SleepLock<T> {}

impl<T> SleepLock<T> {
    pub const fn new(value: T) -> SleepLock<T> {
        SleepLock { held: Mutex::new(false), waiters: WaitQueue::new(), value: core::cell::UnsafeCell::new(value) }
    }

    /// Takes the lock if it is free now, without sleeping (for code that must not sleep).
    pub fn try_lock(&self) -> Option<SleepGuard<'_, T>> {
        arch::without_interrupts(|| {
            let mut held = self.held.lock();
            if *held {
                return None;
            }
            *held = true;
            Some(SleepGuard { lock: self })
        })
    }

    /// Takes the lock, sleeping while another thread holds it.
    pub fn lock(&self) -> SleepGuard<'_, T> {
        let mut taken = false;
        self.waiters.wait_until(|| {
            let mut held = self.held.lock();
            if *held {
                return false;
            }
            *held = true;
            taken = true;
            true
        });
        debug_assert!(taken);
        SleepGuard { lock: self }
    }
}

pub struct SleepGuard<'a, T> {
    lock: &'a SleepLock<T>,
}

impl<T> core::ops::Deref for SleepGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard is the only one while it lives (see `SleepLock`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SleepGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SleepGuard<'_, T> {
    fn drop(&mut self) {
        arch::without_interrupts(|| *self.lock.held.lock() = false);
        self.lock.waiters.wake_all();
    }
}
