//! The scheduler's bookkeeping, free of hardware so that it is tested on the host: the
//! two-level run queues and the queue of timed wake-ups.
//!
//! Run queues: each process is a group with a queue of its runnable threads, oldest first;
//! groups take turns round-robin, one turn each, so that a group cannot take CPU from the
//! others however many threads it has. Which of a group's threads runs in its turn is the
//! `sched.pick_next` graft point (default: the head of the queue, the one that waited longest).
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};

use super::ids::{ProcessId, Tid};

#[derive(Default)]
pub struct RunQueues {
    /// Runnable threads of each group, oldest first. A group is here only while non-empty.
    queues: BTreeMap<ProcessId, VecDeque<Tid>>,
    /// Groups with runnable threads, in turn order.
    turns: VecDeque<ProcessId>,
}

impl RunQueues {
    pub const fn new() -> RunQueues {
        RunQueues { queues: BTreeMap::new(), turns: VecDeque::new() }
    }

    /// Queues `tid` of group `pid` at the back of its group; a group that had no runnable
    /// thread joins the back of the turn order.
    pub fn push(&mut self, pid: ProcessId, tid: Tid) {
        let queue = self.queues.entry(pid).or_default();
        if queue.is_empty() {
            self.turns.push_back(pid);
        }
        queue.push_back(tid);
    }

    /// Takes `tid` out of its group's queue (it blocked or died while queued).
    pub fn remove(&mut self, pid: ProcessId, tid: Tid) {
        if let Some(q) = self.queues.get_mut(&pid) {
            q.retain(|&t| t != tid);
            if q.is_empty() {
                self.drop_group(pid);
            }
        }
    }

    /// Forgets group `pid` altogether (its process ended).
    pub fn drop_group(&mut self, pid: ProcessId) {
        self.queues.remove(&pid);
        self.turns.retain(|&g| g != pid);
    }

    /// The group whose turn it is, moved to the back of the turn order, with the number of
    /// its runnable threads; `None` when nothing is runnable.
    pub fn next_turn(&mut self) -> Option<(ProcessId, usize)> {
        let pid = self.turns.pop_front()?;
        self.turns.push_back(pid);
        Some((pid, self.queues.get(&pid).map_or(0, VecDeque::len)))
    }

    /// Group `pid`'s runnable threads, oldest first.
    pub fn queue(&self, pid: ProcessId) -> Option<&VecDeque<Tid>> {
        self.queues.get(&pid)
    }

    /// Takes the thread to run out of group `pid`'s queue: `chosen` if it is still queued
    /// there, else the head. `None` if the group has no runnable thread now.
    pub fn take(&mut self, pid: ProcessId, chosen: Option<Tid>) -> Option<Tid> {
        let queue = self.queues.get_mut(&pid)?;
        let idx = chosen.and_then(|tid| queue.iter().position(|&q| q == tid)).unwrap_or(0);
        let tid = queue.remove(idx);
        if queue.is_empty() {
            self.drop_group(pid);
        }
        tid
    }

    /// Groups with runnable threads.
    pub fn groups(&self) -> usize {
        self.turns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }
}

/// Threads waiting for a moment in time (sleeps, time-outs), earliest first: the timer tick
/// looks at the expired ones only, never at every thread.
#[derive(Default)]
pub struct Deadlines {
    set: BTreeSet<(u64, Tid)>,
}

impl Deadlines {
    pub const fn new() -> Deadlines {
        Deadlines { set: BTreeSet::new() }
    }

    pub fn add(&mut self, at_ns: u64, tid: Tid) {
        self.set.insert((at_ns, tid));
    }

    /// Forgets `tid`'s deadline `at_ns` (it was woken another way).
    pub fn cancel(&mut self, at_ns: u64, tid: Tid) {
        self.set.remove(&(at_ns, tid));
    }

    /// Takes the next thread whose deadline is at or before `now_ns`.
    pub fn pop_expired(&mut self, now_ns: u64) -> Option<Tid> {
        let &(at, tid) = self.set.first()?;
        if at > now_ns {
            return None;
        }
        self.set.pop_first();
        Some(tid)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(q: &mut RunQueues) -> Option<Tid> {
        let (pid, _) = q.next_turn()?;
        q.take(pid, None)
    }

    #[test]
    fn groups_take_turns_whatever_their_thread_count() {
        let mut q = RunQueues::new();
        for t in 1..=3 {
            q.push(ProcessId(1), Tid(t));
        }
        q.push(ProcessId(2), Tid(10));
        // Each pick requeues the thread as a preempted thread would be.
        let mut order = Vec::new();
        for _ in 0..6 {
            let tid = run(&mut q).unwrap();
            order.push(tid);
            q.push(if tid.0 < 10 { ProcessId(1) } else { ProcessId(2) }, tid);
        }
        assert_eq!(order, [Tid(1), Tid(10), Tid(2), Tid(10), Tid(3), Tid(10)]);
    }

    #[test]
    fn a_choice_is_honoured_only_while_the_thread_is_still_queued() {
        let mut q = RunQueues::new();
        for t in 1..=3 {
            q.push(ProcessId(1), Tid(t));
        }
        assert_eq!(q.take(ProcessId(1), Some(Tid(3))), Some(Tid(3)));
        q.remove(ProcessId(1), Tid(2));
        assert_eq!(q.take(ProcessId(1), Some(Tid(2))), Some(Tid(1)), "a thread gone meanwhile falls back to the head");
        assert!(q.is_empty(), "an empty group leaves the turn order");
        assert_eq!(q.take(ProcessId(1), None), None);
        assert!(q.next_turn().is_none());
    }

    #[test]
    fn dropping_a_group_removes_it_from_the_turns() {
        let mut q = RunQueues::new();
        q.push(ProcessId(1), Tid(1));
        q.push(ProcessId(2), Tid(2));
        q.drop_group(ProcessId(1));
        assert_eq!(q.groups(), 1);
        assert_eq!(run(&mut q), Some(Tid(2)));
        assert!(q.is_empty());
    }

    #[test]
    fn deadlines_come_out_in_time_order_and_only_once_expired() {
        let mut d = Deadlines::new();
        d.add(30, Tid(3));
        d.add(10, Tid(1));
        d.add(20, Tid(2));
        d.cancel(20, Tid(2));
        assert_eq!(d.pop_expired(5), None);
        assert_eq!(d.pop_expired(30), Some(Tid(1)));
        assert_eq!(d.pop_expired(30), Some(Tid(3)));
        assert_eq!(d.pop_expired(u64::MAX), None);
        assert!(d.is_empty());
    }
}
