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

#[derive(Clone, Copy, Debug, Default)]
struct Frame {
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
    undo: Vec<Action>,
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
            undo: Vec::with_capacity(records),
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
            undo: list(records)?,
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
            debug_assert!(self.undo.is_empty() && self.commit.is_empty() && self.locks.is_empty());
            self.depth = 1;
            return Ok(1);
        }
        let Some(frame) = self.frames.get_mut(self.depth) else {
            return Err(TxnError::TooDeep);
        };
        *frame = Frame { undo_mark: self.undo.len(), commit_mark: self.commit.len(), lock_mark: self.locks.len() };
        self.depth += 1;
        Ok(self.depth)
    }

    fn push(list: &mut Vec<Action>, action: Action) -> Result<(), TxnError> {
        // Never grow: growing would allocate on the graft path.
        if list.len() == list.capacity() {
            return Err(TxnError::LogFull);
        }
        list.push(action);
        Ok(())
    }

    /// Records how to undo a change about to be made. Log before changing: if logging fails,
    /// the change must not be made.
    pub fn log_undo(&mut self, action: Action) -> Result<(), TxnError> {
        if self.depth == 0 {
            return Err(TxnError::NoTransaction);
        }
        Self::push(&mut self.undo, action)
    }

    /// Defers an irreversible action until the outermost transaction commits.
    pub fn defer_to_commit(&mut self, action: Action) -> Result<(), TxnError> {
        if self.depth == 0 {
            return Err(TxnError::NoTransaction);
        }
        Self::push(&mut self.commit, action)
    }

    /// Acquires `lock` for this transaction (held until the outermost commit or abort). Taking a
    /// lock the transaction already holds succeeds without counting twice.
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
        self.locks.push(lock);
        Ok(())
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
        if self.depth == 1 && self.commit.is_empty() && self.locks.is_empty() {
            // The outermost transaction, nothing deferred, no lock held (the common case):
            // forget the undo records.
            self.depth = 0;
            self.undo.clear();
            return Ok(());
        }
        if self.depth == 0 {
            return Err(TxnError::NoTransaction);
        }
        self.depth -= 1;
        if self.depth > 0 {
            return Ok(());
        }
        self.commit_outermost(table)
    }

    /// Out of line: the dispatch path only reaches it when the graft deferred an action or took
    /// a lock.
    #[cold]
    fn commit_outermost(&mut self, table: &LockTable) -> Result<(), TxnError> {
        if !self.locks.is_empty() && table.take_doom(self.owner) {
            self.depth = 1;
            self.abort(table)?;
            return Err(TxnError::Doomed);
        }
        for action in &self.commit {
            (action.run)(action.a, action.b);
        }
        self.commit.clear();
        self.undo.clear();
        for &lock in &self.locks {
            table.release(lock, self.owner);
        }
        self.locks.clear();
        Ok(())
    }

    /// Aborts the innermost transaction: runs its undo records newest first, drops its deferred
    /// actions and releases the locks it took.
    pub fn abort(&mut self, table: &LockTable) -> Result<AbortReport, TxnError> {
        if self.depth == 0 {
            return Err(TxnError::NoTransaction);
        }
        self.depth -= 1;
        let frame = self.frames[self.depth];
        let mut report = AbortReport::default();
        while self.undo.len() > frame.undo_mark {
            if let Some(action) = self.undo.pop() {
                (action.run)(action.a, action.b);
                report.undone += 1;
            }
        }
        report.dropped = self.commit.len() - frame.commit_mark;
        self.commit.truncate(frame.commit_mark);
        for lock in self.locks.drain(frame.lock_mark..) {
            table.release(lock, self.owner);
            report.locks_released += 1;
        }
        if self.locks.is_empty() {
            // No lock held any more: a doom mark left for this owner is moot.
            table.take_doom(self.owner);
        }
        Ok(report)
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
