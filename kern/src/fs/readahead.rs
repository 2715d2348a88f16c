//! The default read-ahead policy (the `fs.compute_ra` point's default), per open file: a window
//! that starts small when reads turn sequential, doubles while they stay sequential (up to a
//! cap), and collapses to nothing on a seek, after Linux's on-demand read-ahead. Blocks already
//! requested are not requested again. Plain logic: tested on the host.

/// Blocks read ahead when reads first look sequential, and at most.
pub const INITIAL_WINDOW: u64 = 4;
pub const MAX_WINDOW: u64 = 32;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadAhead {
    /// The block after the last one read: a read starting there is sequential.
    next: u64,
    /// Blocks to keep ahead of the reader (0: none, after a seek).
    window: u64,
    /// The first block not yet asked for.
    ahead_to: u64,
}

impl ReadAhead {
    /// After a read of blocks `first..=last` of a file of `file_blocks` blocks: the blocks to
    /// read ahead (a run), as `start..end`.
    pub fn after_read(&mut self, first: u64, last: u64, file_blocks: u64) -> core::ops::Range<u64> {
        let sequential = first == self.next || (first == 0 && self.next == 0);
        if sequential {
            self.window = if self.window == 0 { INITIAL_WINDOW } else { (self.window * 2).min(MAX_WINDOW) };
        } else {
            self.window = 0;
            self.ahead_to = 0;
        }
        self.next = last.saturating_add(1);
        let start = self.ahead_to.max(self.next);
        let end = self.next.saturating_add(self.window).min(file_blocks);
        if start >= end {
            return start..start;
        }
        self.ahead_to = end;
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_while_sequential_and_never_asks_twice() {
        let mut ra = ReadAhead::default();
        assert_eq!(ra.after_read(0, 0, 1000), 1..5);
        assert_eq!(ra.after_read(1, 1, 1000), 5..10, "window 8 ahead of block 2, blocks 2..5 already asked");
        assert_eq!(ra.after_read(2, 2, 1000), 10..19);
        let mut last = 19;
        for b in 3..40 {
            let r = ra.after_read(b, b, 1000);
            assert!(r.start >= last || r.is_empty(), "block {b}: {r:?} asks again");
            assert!(r.end <= b + 1 + MAX_WINDOW);
            last = last.max(r.end);
        }
    }

    #[test]
    fn a_seek_collapses_the_window_and_nothing_goes_past_the_end() {
        let mut ra = ReadAhead::default();
        ra.after_read(0, 3, 100);
        assert!(ra.after_read(50, 50, 100).is_empty(), "no read-ahead after a seek");
        assert_eq!(ra.after_read(51, 51, 100), 52..56, "sequential again: the initial window");
        assert_eq!(ra.after_read(52, 98, 100), 99..100, "never past the end");
        assert!(ra.after_read(99, 99, 100).is_empty());
    }
}
