//! Transactions around graft calls, after VINO's lightweight transactions.
//!
//! Every graft call runs inside a transaction. Callables that change kernel state first log how
//! to undo the change (`log_undo`); changes that cannot be undone (freeing memory, waking a
//! thread) are deferred to commit (`defer_to_commit`); locks taken on the graft's behalf are
//! held until the outermost commit or abort (two-phase locking). An abort runs the undo records
//! of the aborted level in reverse, drops its deferred actions and releases its locks, leaving
//! the kernel as if that level had never run.
//!
//! Transactions nest: a graft that calls a callable that reaches another graft point begins a
//! child transaction. A child's commit hands its records and locks to the parent (they only
//! become final when the outermost transaction commits); a child's abort undoes only the child.
//!
//! Logs have a fixed capacity chosen when the thread's log is made, so `begin`, logging and
//! `commit` never allocate; a full log is an error the caller turns into a `ResourceLimit` abort.
use alloc::vec::Vec;
use core::fmt;

use super::locks::{LockId, LockTable, Owner};

/// A deferred action: a function and two words, like VINO's "call stack of undo functions".
#[derive(Clone, Copy)]
pub struct Action {
    pub run: fn(u64, u64),
    pub a: u64,
    pub b: u64,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Action({:p}, {:#x}, {:#x})", self.run as *const (), self.a, self.b)
    }
}

/// Deepest nesting of transactions on one thread.
pub const MAX_NESTING: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnError {
    /// `begin` beyond `MAX_NESTING`.
    TooDeep,
    /// Logging or committing outside any transaction.
    NoTransaction,
    /// The undo log, commit log or lock list is full.
    LogFull,
    /// A waiter timed out on a lock the transaction held: instead of committing, it was
    /// aborted (and its locks released).
    Doomed,
    /// No memory for a new log.
    NoMemory,
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TxnError::TooDeep => write!(f, "transactions nested deeper than {MAX_NESTING}"),
            TxnError::NoTransaction => write!(f, "no transaction is active"),
            TxnError::LogFull => write!(f, "transaction log is full"),
            TxnError::Doomed => write!(f, "a waiter timed out on a lock the transaction held; it was aborted"),
            TxnError::NoMemory => write!(f, "no memory for a transaction log"),
        }
    }
}

/// The undo records: a stack of fixed capacity addressed by pointers, so that logging a
/// record is a compare, three stores and a bump. Outside any transaction it reads as full
/// (`top == end`): logging there fails the same compare, and only then is the error told
/// apart (`NoTransaction` rather than `LogFull`), so the hot path has no depth test.
struct UndoStack {
    /// Owns the storage; its length stays 0 (the records live in its spare capacity).
    _storage: Vec<Action>,
    base: *mut Action,
    end: *mut Action,
    /// Next free slot, in `base..=end`; `end` outside any transaction.
    top: *mut Action,
}

// SAFETY: the pointers address `buf`'s heap storage, which moves with the stack and is
// reached only through `&mut self`; `Action` is plain data (a function pointer and two words).
unsafe impl Send for UndoStack {}
// SAFETY: `&UndoStack` only reads the pointers (no interior mutability).
unsafe impl Sync for UndoStack {}

impl UndoStack {
    fn new(mut buf: Vec<Action>) -> UndoStack {
        buf.clear();
        let base = buf.as_mut_ptr();
        // SAFETY: `capacity` elements are allocated from `base` (for a capacity of 0 the
        // dangling pointer plus 0 is itself).
        let end = unsafe { base.add(buf.capacity()) };
        UndoStack { _storage: buf, base, end, top: end }
    }

    #[inline(always)]
    fn push(&mut self, action: Action) -> bool {
        if self.top == self.end {
            return false;
        }
        // SAFETY: `top < end`: the slot is allocated and not in use; `Action` is `Copy`, so
        // nothing is dropped; `top` stays within `base..=end`.
        unsafe {
            self.top.write(action);
            self.top = self.top.add(1);
        }
        true
    }

    /// Opens the stack for the outermost transaction (empty, room for `capacity` records).
    #[inline(always)]
    fn open(&mut self) {
        self.top = self.base;
    }

    /// Closes it after the outermost transaction: forgets every record, reads as full.
    #[inline(always)]
    fn close(&mut self) {
        self.top = self.end;
    }

    /// Runs the records above `mark` (in `base..=top`) newest first and drops them; returns
    /// how many ran.
    #[inline(always)]
    fn undo_to(&mut self, mark: *mut Action) -> usize {
        let top = self.top;
        // SAFETY: `mark` and `top` both lie in `base..=end` of one allocation, `mark <= top`.
        let n = unsafe { top.offset_from(mark) }.max(0) as usize;
        let mut p = top;
        while p > mark {
            // SAFETY: `mark <= p - 1 < end`: a slot written by `push` and not yet undone. An
            // undo action restores kernel state and never reaches this log, so the stack
            // does not change while it runs (`top` is written once, after the loop).
            unsafe {
                p = p.sub(1);
                let a = p.read();
                (a.run)(a.a, a.b);
            }
        }
        self.top = mark;
        n
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Frame {
    /// `UndoStack::top` when the frame began (unused in the outermost frame: its mark is
    /// the stack's base).
    undo_mark: usize,
    commit_mark: usize,
    lock_mark: usize,
}

/// What an abort did, for statistics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AbortReport {
    pub undone: usize,
    pub dropped: usize,
    pub locks_released: usize,
}

/// One thread's transaction state.
pub struct TxnLog {
    owner: Owner,
    undo: UndoStack,
    commit: Vec<Action>,
    locks: Vec<LockId>,
    frames: [Frame; MAX_NESTING],
    depth: usize,
}

impl TxnLog {
    /// A log for `owner` holding up to `records` undo and `records` commit actions and
    /// `max_locks` locks across all nesting levels. Allocates now, never later.
    pub fn new(owner: Owner, records: usize, max_locks: usize) -> TxnLog {
        TxnLog {
            owner,
            undo: UndoStack::new(Vec::with_capacity(records)),
            commit: Vec::with_capacity(records),
            locks: Vec::with_capacity(max_locks),
            frames: [Frame::default(); MAX_NESTING],
            depth: 0,
        }
    }

    /// As `new`, but a failed allocation is an error instead of the end of the kernel (the
    /// kernel makes one log per thread, on a system-call path).
    pub fn try_new(owner: Owner, records: usize, max_locks: usize) -> Result<TxnLog, TxnError> {
        fn list<T>(n: usize) -> Result<Vec<T>, TxnError> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| TxnError::NoMemory)?;
            Ok(v)
        }
        Ok(TxnLog {
            owner,
            undo: UndoStack::new(list(records)?),
            commit: list(records)?,
            locks: list(max_locks)?,
            frames: [Frame::default(); MAX_NESTING],
            depth: 0,
        })
    }

    /// Ends every transaction still open (outermost included) by aborting it, so that the log
    /// holds no lock and no record: for a log about to be dropped or handed to a new thread.
    pub fn abort_all(&mut self, table: &LockTable) {
        while self.depth > 0 {
            if self.abort(table).is_err() {
                break;
            }
        }
    }

    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// Nesting depth: 0 outside any transaction.
    pub fn depth(&self) -> usize {
        self.depth
    }

    #[inline]
    pub fn begin(&mut self) -> Result<usize, TxnError> {
        if self.depth == 0 {
            // Outside any transaction every list is empty (the outermost commit and abort
            // empty them; nothing logs at depth 0), so the outermost frame's marks are the
            // zeros `frames[0]` always holds.
            debug_assert!(self.undo.top == self.undo.end && self.commit.is_empty() && self.locks.is_empty());
            self.depth = 1;
            self.undo.open();
            return Ok(1);
        }
        let Some(frame) = self.frames.get_mut(self.depth) else {
            return Err(TxnError::TooDeep);
        };
        *frame = Frame { undo_mark: self.undo.top as usize, commit_mark: self.commit.len(), lock_mark: self.locks.len() };
        self.depth += 1;
        Ok(self.depth)
    }

    /// Appends to a list of fixed capacity: never grows (growing would allocate on the graft
    /// path), and checks the capacity once (`Vec::push` would check it again for its growth
    /// path).
    #[inline(always)]
    fn push<T>(list: &mut Vec<T>, item: T) -> Result<(), TxnError> {
        let len = list.len();
        if len == list.capacity() {
            return Err(TxnError::LogFull);
        }
        // SAFETY: `len < capacity`, so the slot at `len` is allocated and holds no element;
        // it is written before the length counts it, exactly as `Vec::push` does.
        unsafe {
            list.as_mut_ptr().add(len).write(item);
            list.set_len(len + 1);
        }
        Ok(())
    }

    /// Records how to undo a change about to be made. Log before changing: if logging fails,
    /// the change must not be made.
    #[inline]
    pub fn log_undo(&mut self, action: Action) -> Result<(), TxnError> {
        if self.undo.push(action) {
            return Ok(());
        }
        Err(if self.depth == 0 { TxnError::NoTransaction } else { TxnError::LogFull })
    }

    /// Defers an irreversible action until the outermost transaction commits.
    #[inline]
    pub fn defer_to_commit(&mut self, action: Action) -> Result<(), TxnError> {
        if self.depth == 0 {
            return Err(TxnError::NoTransaction);
        }
        Self::push(&mut self.commit, action)
    }

    /// Acquires `lock` for this transaction (held until the outermost commit or abort). Taking a
    /// lock the transaction already holds succeeds without counting twice.
    #[inline]
    pub fn lock(&mut self, table: &LockTable, lock: LockId) -> Result<(), LockAcquireError> {
        if self.depth == 0 {
            return Err(LockAcquireError::Txn(TxnError::NoTransaction));
        }
        if self.locks.contains(&lock) {
            return Ok(());
        }
        if self.locks.len() == self.locks.capacity() {
            return Err(LockAcquireError::Txn(TxnError::LogFull));
        }
        table.try_acquire(lock, self.owner).map_err(LockAcquireError::Lock)?;
        Self::push(&mut self.locks, lock).map_err(LockAcquireError::Txn)
    }

    /// Whether this thread's transactions hold `lock`.
    pub fn holds(&self, lock: LockId) -> bool {
        self.locks.contains(&lock)
    }

    /// Commits the innermost transaction. A child's records and locks pass to its parent; the
    /// outermost commit runs the deferred actions in the order they were logged, forgets the
    /// undo records and releases every lock.
    ///
    /// If a waiter timed out on a lock the transaction holds (it is doomed), the outermost
    /// commit aborts instead and returns `Doomed`.
    #[inline]
    pub fn commit(&mut self, table: &LockTable) -> Result<(), TxnError> {
        if self.depth != 1 || !self.commit.is_empty() {
            return self.commit_general(table);
        }
        // The outermost transaction with nothing deferred (the common case): forget the undo
        // records and release the locks, inline (a graft that takes a lock pays for the
        // release here, not for a call).
        if !self.locks.is_empty() {
            if table.take_doom(self.owner) {
                return self.doomed(table);
            }
            self.release_from(table, 0);
        }
        self.depth = 0;
        self.undo.close();
        Ok(())
    }

    /// A child's commit, an outermost commit with deferred actions, or a commit outside any
    /// transaction (an error).
    #[inline(never)]
    fn commit_general(&mut self, table: &LockTable) -> Result<(), TxnError> {
        if self.depth == 0 {
            return Err(TxnError::NoTransaction);
        }
        self.depth -= 1;
        if self.depth > 0 {
            return Ok(());
        }
        self.commit_outermost(table)
    }

    /// Out of line: the dispatch path only reaches it when the graft deferred an action.
    #[cold]
    fn commit_outermost(&mut self, table: &LockTable) -> Result<(), TxnError> {
        if !self.locks.is_empty() && table.take_doom(self.owner) {
            self.depth = 1;
            return self.doomed(table);
        }
        for action in &self.commit {
            (action.run)(action.a, action.b);
        }
        self.commit.clear();
        self.undo.close();
        self.release_from(table, 0);
        Ok(())
    }

    /// The outermost transaction (at depth 1) was doomed: abort it instead of committing.
    #[cold]
    fn doomed(&mut self, table: &LockTable) -> Result<(), TxnError> {
        self.abort(table)?;
        Err(TxnError::Doomed)
    }

    /// Releases the locks from `self.locks[mark..]` and forgets them; returns how many. One
    /// lock (what a graft usually takes) is released inline, more by a loop out of line.
    #[inline(always)]
    fn release_from(&mut self, table: &LockTable, mark: usize) -> usize {
        let n = self.locks.len().saturating_sub(mark);
        match n {
            0 => return 0,
            1 => {
                if let Some(&lock) = self.locks.last() {
                    table.release(lock, self.owner);
                }
            }
            _ => self.release_many(table, mark),
        }
        self.locks.truncate(mark);
        n
    }

    #[cold]
    #[inline(never)]
    fn release_many(&self, table: &LockTable, mark: usize) {
        for &lock in self.locks.get(mark..).unwrap_or(&[]) {
            table.release(lock, self.owner);
        }
    }

    /// Aborts the innermost transaction: runs its undo records newest first, drops its deferred
    /// actions and releases the locks it took.
    #[inline]
    pub fn abort(&mut self, table: &LockTable) -> Result<AbortReport, TxnError> {
        if self.depth == 1 && self.commit.is_empty() && self.locks.is_empty() {
            // The outermost transaction with nothing deferred and no lock (a graft that
            // failed): run the undo records, inline.
            self.depth = 0;
            let undone = self.undo.undo_to(self.undo.base);
            self.undo.close();
            // No lock held: a doom mark left for this owner is moot.
            table.take_doom(self.owner);
            return Ok(AbortReport { undone, dropped: 0, locks_released: 0 });
        }
        self.abort_general(table)
    }

    #[inline(never)]
    fn abort_general(&mut self, table: &LockTable) -> Result<AbortReport, TxnError> {
        if self.depth == 0 {
            return Err(TxnError::NoTransaction);
        }
        self.depth -= 1;
        let frame = self.frames.get(self.depth).copied().unwrap_or_default();
        let undone = if self.depth == 0 {
            let n = self.undo.undo_to(self.undo.base);
            self.undo.close();
            n
        } else {
            self.undo.undo_to(frame.undo_mark as *mut Action)
        };
        let dropped = self.commit.len().saturating_sub(frame.commit_mark);
        self.commit.truncate(frame.commit_mark);
        let locks_released = self.release_from(table, frame.lock_mark);
        if self.locks.is_empty() {
            // No lock held any more: a doom mark left for this owner is moot.
            table.take_doom(self.owner);
        }
        Ok(AbortReport { undone, dropped, locks_released })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockAcquireError {
    Txn(TxnError),
    Lock(super::locks::LockError),
}

impl fmt::Display for LockAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LockAcquireError::Txn(e) => write!(f, "{e}"),
            LockAcquireError::Lock(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    // Kernel state the actions change: a few counters and a trace of what ran.
    static STATE: Mutex<([i64; 4], Vec<(u64, u64)>)> = Mutex::new(([0; 4], Vec::new()));
    static SERIAL: Mutex<()> = Mutex::new(());

    fn restore(slot: u64, old: u64) {
        STATE.lock().unwrap().0[slot as usize] = old as i64;
    }
    fn trace(a: u64, b: u64) {
        STATE.lock().unwrap().1.push((a, b));
    }
    /// A callable: sets a counter, logging its old value first.
    fn set(log: &mut TxnLog, slot: usize, value: i64) -> Result<(), TxnError> {
        let old = STATE.lock().unwrap().0[slot];
        log.log_undo(Action { run: restore, a: slot as u64, b: old as u64 })?;
        STATE.lock().unwrap().0[slot] = value;
        Ok(())
    }
    fn snapshot() -> ([i64; 4], Vec<(u64, u64)>) {
        STATE.lock().unwrap().clone()
    }
    fn reset() -> std::sync::MutexGuard<'static, ()> {
        let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        *STATE.lock().unwrap() = ([0; 4], Vec::new());
        g
    }

    #[test]
    fn abort_restores_state_in_reverse_and_drops_deferred_actions() {
        let _g = reset();
        let table = LockTable::new();
        let mut log = TxnLog::new(Owner(1), 16, 4);
        set(&mut log, 0, 5).unwrap_err(); // outside a transaction: refused, nothing changed
        assert_eq!(snapshot().0, [0; 4]);
        log.begin().unwrap();
        set(&mut log, 0, 5).unwrap();
        set(&mut log, 0, 6).unwrap();
        set(&mut log, 1, 7).unwrap();
        log.defer_to_commit(Action { run: trace, a: 1, b: 2 }).unwrap();
        log.lock(&table, LockId(2)).unwrap();
        let report = log.abort(&table).unwrap();
        assert_eq!(report, AbortReport { undone: 3, dropped: 1, locks_released: 1 });
        assert_eq!(snapshot(), ([0; 4], vec![]));
        assert_eq!(table.holder(LockId(2)), None);
        assert_eq!(log.depth(), 0);
    }

    #[test]
    fn commit_keeps_changes_and_runs_deferred_actions_once_in_order() {
        let _g = reset();
        let table = LockTable::new();
        let mut log = TxnLog::new(Owner(1), 16, 4);
        log.begin().unwrap();
        set(&mut log, 2, 9).unwrap();
        log.defer_to_commit(Action { run: trace, a: 1, b: 0 }).unwrap();
        log.defer_to_commit(Action { run: trace, a: 2, b: 0 }).unwrap();
        log.lock(&table, LockId(0)).unwrap();
        log.commit(&table).unwrap();
        assert_eq!(snapshot(), ([0, 0, 9, 0], vec![(1, 0), (2, 0)]));
        assert_eq!(table.holder(LockId(0)), None);
        // Nothing left to run or undo: a second commit is an error, not a rerun.
        assert_eq!(log.commit(&table), Err(TxnError::NoTransaction));
        assert_eq!(snapshot().1.len(), 2);
    }

    #[test]
    fn child_abort_undoes_only_the_child() {
        let _g = reset();
        let table = LockTable::new();
        let mut log = TxnLog::new(Owner(1), 16, 4);
        log.begin().unwrap();
        set(&mut log, 0, 1).unwrap();
        log.lock(&table, LockId(0)).unwrap();
        log.begin().unwrap();
        set(&mut log, 0, 2).unwrap();
        set(&mut log, 1, 2).unwrap();
        log.lock(&table, LockId(1)).unwrap();
        log.defer_to_commit(Action { run: trace, a: 9, b: 9 }).unwrap();
        log.abort(&table).unwrap();
        assert_eq!(snapshot().0, [1, 0, 0, 0]);
        assert_eq!(table.holder(LockId(1)), None);
        assert_eq!(table.holder(LockId(0)), Some(Owner(1)), "the parent's lock stays held");
        log.commit(&table).unwrap();
        assert_eq!(snapshot(), ([1, 0, 0, 0], vec![]), "the child's deferred action never ran");
    }

    #[test]
    fn child_commit_is_undone_by_the_parent_abort() {
        let _g = reset();
        let table = LockTable::new();
        let mut log = TxnLog::new(Owner(1), 16, 4);
        log.begin().unwrap();
        set(&mut log, 0, 1).unwrap();
        log.begin().unwrap();
        set(&mut log, 1, 2).unwrap();
        log.lock(&table, LockId(3)).unwrap();
        log.defer_to_commit(Action { run: trace, a: 1, b: 1 }).unwrap();
        log.commit(&table).unwrap();
        assert_eq!(table.holder(LockId(3)), Some(Owner(1)), "two-phase: held until the outermost end");
        log.abort(&table).unwrap();
        assert_eq!(snapshot(), ([0; 4], vec![]));
        assert_eq!(table.holder(LockId(3)), None);
    }

    #[test]
    fn limits_are_errors_and_leave_the_log_usable() {
        let _g = reset();
        let table = LockTable::new();
        let mut log = TxnLog::new(Owner(1), 2, 1);
        for _ in 0..MAX_NESTING {
            log.begin().unwrap();
        }
        assert_eq!(log.begin(), Err(TxnError::TooDeep));
        set(&mut log, 0, 1).unwrap();
        set(&mut log, 0, 2).unwrap();
        assert_eq!(set(&mut log, 0, 3), Err(TxnError::LogFull));
        assert_eq!(snapshot().0[0], 2, "a refused log record means the change was not made");
        log.lock(&table, LockId(0)).unwrap();
        assert_eq!(log.lock(&table, LockId(1)), Err(LockAcquireError::Txn(TxnError::LogFull)));
        while log.depth() > 0 {
            log.abort(&table).unwrap();
        }
        assert_eq!(snapshot().0, [0; 4]);
        assert_eq!(table.holder(LockId(0)), None);
    }

    #[test]
    fn a_doomed_transaction_aborts_at_commit_and_a_stale_doom_is_cleared() {
        let _g = reset();
        let table = LockTable::new();
        let mut log = TxnLog::new(Owner(3), 16, 4);
        log.begin().unwrap();
        set(&mut log, 0, 8).unwrap();
        log.defer_to_commit(Action { run: trace, a: 9, b: 9 }).unwrap();
        log.lock(&table, LockId(1)).unwrap();
        table.doom(Owner(3)); // a waiter gave up on LockId(1)
        assert_eq!(log.commit(&table), Err(TxnError::Doomed));
        assert_eq!(snapshot(), ([0; 4], vec![]), "undone, deferred action dropped");
        assert_eq!(table.holder(LockId(1)), None, "the lock is released for the waiter");
        assert_eq!(log.depth(), 0);
        assert!(!table.take_doom(Owner(3)), "the doom mark was used up");

        // The same with nothing deferred (the inline commit path).
        log.begin().unwrap();
        set(&mut log, 1, 4).unwrap();
        log.lock(&table, LockId(1)).unwrap();
        table.doom(Owner(3));
        assert_eq!(log.commit(&table), Err(TxnError::Doomed));
        assert_eq!(snapshot().0, [0; 4]);
        assert_eq!((table.holder(LockId(1)), log.depth()), (None, 0));
        assert!(!table.take_doom(Owner(3)));

        // Doomed, but the transaction aborts for another reason: the mark does not outlive it.
        log.begin().unwrap();
        log.lock(&table, LockId(1)).unwrap();
        table.doom(Owner(3));
        log.abort(&table).unwrap();
        log.begin().unwrap();
        log.lock(&table, LockId(2)).unwrap();
        assert_eq!(log.commit(&table), Ok(()), "a later transaction is not hit by the old mark");
        assert_eq!(table.holder(LockId(2)), None);
    }
}
