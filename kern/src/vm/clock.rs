//! The two-handed clock over one process's resident pages (VINO's default eviction), as plain
//! logic: the hardware's accessed bits reach it through [`PageBits`], so the host tests drive
//! it with a model and the kernel with the page tables.
//!
//! The pages stand in a ring. Two hands move together, the front one `spread` pages ahead of
//! the back one: the front hand clears a page's referenced bit (hardware and software); the
//! back hand, reaching the page later, finds it referenced again only if the program touched
//! it in between. Pages the back hand finds unreferenced, and pages a graft moved to the
//! inactive set, are the candidates for eviction: [`Clock::window`] gathers a bounded number
//! of them for `vm.pick_victim`.
use alloc::vec::Vec;

/// What the clock needs of the hardware: test-and-clear of a page's accessed bit, and its
/// dirty bit (read only).
pub trait PageBits {
    fn take_accessed(&mut self, va: u64) -> bool;
    /// The accessed bit, left as it is.
    fn accessed(&self, va: u64) -> bool;
    fn dirty(&self, va: u64) -> bool;
}

/// A resident page as the clock keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockPage {
    pub va: u64,
    /// Software referenced bit: the hardware bits the clock has folded in since the front hand
    /// last cleared it.
    pub referenced: bool,
    /// False once a graft moved the page to the inactive set (offered first for eviction); set
    /// again when the page is seen referenced.
    pub active: bool,
    /// The clock's step count when the page was last seen referenced (or made resident).
    pub last_ref: u64,
}

/// A page the clock proposes for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub va: u64,
    pub referenced: bool,
    pub dirty: bool,
    /// Clock steps since the page was last seen referenced.
    pub age: u64,
}

#[derive(Debug, Default)]
pub struct Clock {
    ring: Vec<ClockPage>,
    /// The back hand's position in `ring` (the front hand is `spread()` ahead).
    hand: usize,
    /// Steps the hands have made: the clock's notion of time.
    steps: u64,
}

impl Clock {
    pub const fn new() -> Clock {
        Clock { ring: Vec::new(), hand: 0, steps: 0 }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Distance from the back hand to the front hand.
    fn spread(&self) -> usize {
        (self.ring.len() / 2).max(1)
    }

    pub fn contains(&self, va: u64) -> bool {
        self.ring.iter().any(|p| p.va == va)
    }

    pub fn get(&self, va: u64) -> Option<&ClockPage> {
        self.ring.iter().find(|p| p.va == va)
    }

    pub fn get_mut(&mut self, va: u64) -> Option<&mut ClockPage> {
        self.ring.iter_mut().find(|p| p.va == va)
    }

    pub fn pages(&self) -> impl Iterator<Item = &ClockPage> {
        self.ring.iter()
    }

    /// Room for one more page (so that `insert` cannot fail for lack of memory).
    pub fn try_reserve(&mut self) -> Result<(), alloc::collections::TryReserveError> {
        self.ring.try_reserve(1)
    }

    /// Adds a page just made resident, just behind the back hand: the last page both hands
    /// reach. Call `try_reserve` first where an allocation failure must not panic.
    pub fn insert(&mut self, va: u64) {
        if self.contains(va) {
            return;
        }
        let page = ClockPage { va, referenced: true, active: true, last_ref: self.steps };
        let at = self.hand.min(self.ring.len());
        self.ring.insert(at, page);
        self.hand = at + 1;
        if self.hand >= self.ring.len() {
            self.hand = 0;
        }
    }

    /// Keeps the pages whose address `keep` accepts (allocates nothing).
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        // The hand stays on the page it was on, or on the next page that is kept.
        let mut at = 0;
        let mut hand = 0;
        let old_hand = self.hand;
        self.ring.retain(|p| {
            let kept = keep(p.va);
            if at < old_hand && kept {
                hand += 1;
            }
            at += 1;
            kept
        });
        self.hand = if hand < self.ring.len() { hand } else { 0 };
    }

    /// Forgets a page (evicted or unmapped). Returns whether it was there.
    pub fn remove(&mut self, va: u64) -> bool {
        let Some(at) = self.ring.iter().position(|p| p.va == va) else { return false };
        self.ring.remove(at);
        if at < self.hand {
            self.hand -= 1;
        }
        if self.hand >= self.ring.len() {
            self.hand = 0;
        }
        true
    }

    /// Whether the page counts as referenced now (its software bit or the hardware's, which
    /// is folded in and cleared).
    fn harvest(&mut self, at: usize, bits: &mut dyn PageBits) -> bool {
        let steps = self.steps;
        let p = &mut self.ring[at];
        if bits.take_accessed(p.va) {
            p.referenced = true;
        }
        if p.referenced {
            p.last_ref = steps;
            p.active = true;
        }
        p.referenced
    }

    fn proposal(&self, at: usize, bits: &dyn PageBits) -> Proposal {
        let p = &self.ring[at];
        Proposal { va: p.va, referenced: p.referenced, dirty: bits.dirty(p.va), age: self.steps.saturating_sub(p.last_ref) }
    }

    /// Up to `max` pages to choose a victim from. First the inactive pages; then the clock's
    /// own choice: both hands advance until the back hand finds a page nobody touched since the
    /// front hand passed it (at most two turns; if every page keeps being touched, the page
    /// under the back hand); then the pages after it that look unreferenced too, read without
    /// moving the hands or clearing anything. The clock's choice is the first proposal after
    /// the inactive pages. Empty only when no page is resident.
    pub fn window(&mut self, bits: &mut dyn PageBits, max: usize) -> Vec<Proposal> {
        let mut out: Vec<Proposal> = Vec::new();
        let n = self.ring.len();
        if n == 0 || max == 0 || out.try_reserve_exact(max.min(n)).is_err() {
            return out;
        }
        let max = max.min(n);
        for at in 0..n {
            if out.len() >= max {
                return out;
            }
            if !self.ring[at].active {
                out.push(self.proposal(at, bits));
            }
        }
        if out.len() >= max {
            return out;
        }
        let spread = self.spread();
        let mut choice = None;
        for _ in 0..2 * n {
            let back = self.hand;
            let front = (back + spread) % n;
            self.steps += 1;
            // The front hand clears the bits of the page it passes.
            self.harvest(front, bits);
            self.ring[front].referenced = false;
            self.hand = (back + 1) % n;
            // The back hand stops at a page nobody touched since the front hand passed.
            if !self.harvest(back, bits) {
                choice = Some(back);
                break;
            }
        }
        let first = choice.unwrap_or(self.hand);
        if !out.iter().any(|c| c.va == self.ring[first].va) {
            out.push(self.proposal(first, bits));
        }
        for k in 1..n {
            if out.len() >= max {
                break;
            }
            let at = (first + k) % n;
            let p = &self.ring[at];
            if !p.referenced && !bits.accessed(p.va) && p.active {
                out.push(self.proposal(at, bits));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;

    #[derive(Default)]
    struct Model {
        accessed: BTreeSet<u64>,
        dirty: BTreeSet<u64>,
    }

    impl PageBits for Model {
        fn take_accessed(&mut self, va: u64) -> bool {
            self.accessed.remove(&va)
        }
        fn accessed(&self, va: u64) -> bool {
            self.accessed.contains(&va)
        }
        fn dirty(&self, va: u64) -> bool {
            self.dirty.contains(&va)
        }
    }

    fn clock_of(pages: u64) -> Clock {
        let mut c = Clock::new();
        for i in 0..pages {
            c.insert(i * 4096);
        }
        c
    }

    #[test]
    fn unreferenced_pages_are_proposed_and_referenced_ones_kept() {
        let mut c = clock_of(8);
        let mut m = Model::default();
        // First window: every page was referenced when made resident; the front hand clears.
        let w = c.window(&mut m, 3);
        assert_eq!(w.len(), 3);
        // Pages 2 and 5 are touched again: no later window proposes them while others are idle.
        for _ in 0..4 {
            m.accessed.insert(2 * 4096);
            m.accessed.insert(5 * 4096);
            let w = c.window(&mut m, 2);
            assert_eq!(w.len(), 2);
            assert!(w.iter().all(|p| p.va != 2 * 4096 && p.va != 5 * 4096 && !p.referenced), "{w:?}");
        }
    }

    #[test]
    fn inactive_pages_come_first_and_all_referenced_still_gives_a_window() {
        let mut c = clock_of(4);
        let mut m = Model::default();
        c.get_mut(3 * 4096).unwrap().active = false;
        let w = c.window(&mut m, 2);
        assert_eq!(w[0].va, 3 * 4096);
        for _ in 0..3 {
            for i in 0..4 {
                m.accessed.insert(i * 4096);
            }
            assert!(!c.window(&mut m, 2).is_empty());
        }
        assert!(Clock::new().window(&mut m, 4).is_empty());
    }

    #[test]
    fn remove_keeps_the_hand_inside_the_ring() {
        let mut c = clock_of(5);
        let mut m = Model::default();
        c.window(&mut m, 2);
        for i in (0..5).rev() {
            assert!(c.remove(i * 4096));
            let _ = c.window(&mut m, 3);
        }
        assert!(c.is_empty() && !c.remove(0));
        m.dirty.insert(4096);
        c.insert(4096);
        assert!(c.window(&mut m, 1)[0].dirty);
    }
}
