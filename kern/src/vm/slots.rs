//! Swap slots: one page each on the swap disk, handed out and taken back (plain logic,
//! host-tested). A slot is 4 KiB, 8 sectors of 512 bytes.
use alloc::vec::Vec;

/// A page-sized slot of the swap disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(pub u32);

impl Slot {
    pub const SECTORS: u64 = 8;

    pub fn first_sector(self) -> u64 {
        u64::from(self.0) * Self::SECTORS
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum SlotError {
    /// Every slot is in use.
    Full,
    /// Freeing a slot that is not in use (a bookkeeping bug, reported rather than ignored).
    NotInUse(Slot),
}

/// A bitmap of slots with a rotating search start.
#[derive(Debug, Default)]
pub struct SlotMap {
    used: Vec<u64>,
    slots: u32,
    in_use: u32,
    next: u32,
}

impl SlotMap {
    pub const fn new() -> SlotMap {
        SlotMap { used: Vec::new(), slots: 0, in_use: 0, next: 0 }
    }

    /// Sets the number of slots (once the swap disk is known); false if memory is short.
    pub fn resize(&mut self, slots: u32) -> bool {
        let words = slots.div_ceil(64) as usize;
        if self.used.try_reserve(words.saturating_sub(self.used.len())).is_err() {
            return false;
        }
        self.used.resize(words, 0);
        self.slots = slots;
        true
    }

    pub fn capacity(&self) -> u32 {
        self.slots
    }

    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    pub fn alloc(&mut self) -> Result<Slot, SlotError> {
        if self.in_use >= self.slots {
            return Err(SlotError::Full);
        }
        for k in 0..self.slots {
            let s = (self.next + k) % self.slots;
            let (w, b) = ((s / 64) as usize, s % 64);
            if self.used[w] & (1 << b) == 0 {
                self.used[w] |= 1 << b;
                self.in_use += 1;
                self.next = (s + 1) % self.slots;
                return Ok(Slot(s));
            }
        }
        Err(SlotError::Full)
    }

    pub fn free(&mut self, slot: Slot) -> Result<(), SlotError> {
        let s = slot.0;
        let (w, b) = ((s / 64) as usize, s % 64);
        match self.used.get_mut(w) {
            Some(word) if s < self.slots && *word & (1 << b) != 0 => {
                *word &= !(1 << b);
                self.in_use -= 1;
                Ok(())
            }
            _ => Err(SlotError::NotInUse(slot)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_unique_until_freed_and_full_is_an_error() {
        let mut m = SlotMap::new();
        assert_eq!(m.alloc(), Err(SlotError::Full));
        assert!(m.resize(130));
        let mut got: Vec<Slot> = (0..130).map(|_| m.alloc().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 130);
        assert_eq!(m.alloc(), Err(SlotError::Full));
        m.free(Slot(77)).unwrap();
        assert_eq!(m.free(Slot(77)), Err(SlotError::NotInUse(Slot(77))));
        assert_eq!(m.free(Slot(500)), Err(SlotError::NotInUse(Slot(500))));
        assert_eq!(m.alloc(), Ok(Slot(77)));
        assert_eq!(m.in_use(), 130);
        assert_eq!(Slot(3).first_sector(), 24);
    }
}
