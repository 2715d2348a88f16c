//! Memory devices read and write directly (DMA): physically contiguous runs of pages from a
//! pool set aside at boot, handed out first-fit by a bitmap. The bookkeeping is plain logic
//! (host-tested); the pool itself is the kernel's (`kernel::dma_alloc`).

/// First-fit allocator of runs of pages over a pool of `N * 64` pages.
pub struct RunAllocator<const N: usize> {
    used: [u64; N],
    pages: usize,
}

impl<const N: usize> RunAllocator<N> {
    /// A pool of `pages` pages (at most `N * 64`), all free.
    pub const fn new(pages: usize) -> Self {
        let pages = if pages > N * 64 { N * 64 } else { pages };
        RunAllocator { used: [0; N], pages }
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Index of the first page of a free run of `n` pages, now marked used.
    pub fn alloc(&mut self, n: usize) -> Option<usize> {
        if n == 0 || n > self.pages {
            return None;
        }
        let mut start = 0;
        while start + n <= self.pages {
            match (start..start + n).find(|&i| self.is_used(i)) {
                Some(used) => start = used + 1,
                None => {
                    for i in start..start + n {
                        self.set(i, true);
                    }
                    return Some(start);
                }
            }
        }
        None
    }

    /// Frees the run of `n` pages at `first`; false (and nothing changed) unless every page of
    /// it was in use.
    pub fn free(&mut self, first: usize, n: usize) -> bool {
        let Some(end) = first.checked_add(n) else { return false };
        if n == 0 || end > self.pages || !(first..end).all(|i| self.is_used(i)) {
            return false;
        }
        for i in first..end {
            self.set(i, false);
        }
        true
    }

    /// Pages in use.
    pub fn used(&self) -> usize {
        self.used.iter().map(|w| w.count_ones() as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_first_fit_and_freed_runs_are_reused() {
        let mut a = RunAllocator::<1>::new(10);
        assert_eq!(a.alloc(4), Some(0));
        assert_eq!(a.alloc(4), Some(4));
        assert_eq!(a.alloc(4), None, "only 2 pages left");
        assert!(a.free(0, 4));
        assert_eq!(a.alloc(2), Some(0));
        assert_eq!(a.alloc(3), None, "2..4 is 2 pages, 8..10 is 2: no run of 3");
        assert_eq!(a.alloc(2), Some(2));
        assert_eq!(a.used(), 8);
    }

    #[test]
    fn bad_frees_change_nothing() {
        let mut a = RunAllocator::<1>::new(8);
        assert_eq!(a.alloc(2), Some(0));
        assert!(!a.free(1, 2), "page 2 is not in use");
        assert!(!a.free(6, 4), "past the pool");
        assert!(!a.free(usize::MAX, 2));
        assert!(!a.free(0, 0));
        assert_eq!(a.used(), 2);
        assert!(a.free(0, 2));
        assert_eq!(a.used(), 0);
        assert_eq!(RunAllocator::<1>::new(1000).alloc(65), None, "the pool is capped at N * 64 pages");
    }
}
