//! The physical frame allocator's bookkeeping.
//!
//! Usable regions from the boot memory map are handed out front to back by a cursor, so nothing
//! is touched until it is needed; freed frames go on an intrusive free list whose links live in
//! the free frames themselves (reached through `FrameLinks`), so the allocator needs no heap and
//! can serve the heap's own growth.
use core::fmt;

use super::{PAGE_SIZE, align_down, align_up};

/// Reads and writes the free-list link stored in a free frame.
pub trait FrameLinks {
    fn read_link(&self, frame: u64) -> u64;
    fn write_link(&mut self, frame: u64, next: u64);
}

/// At most this many usable regions are managed; the rest of a very fragmented map is ignored
/// (and reported by `add_region`).
pub const MAX_REGIONS: usize = 64;

/// No frame: frame 0 is never handed out, so 0 ends the free list.
const NIL: u64 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not the start of a 4 KiB frame.
    Unaligned(u64),
    /// The frame is not one this allocator handed out.
    NotManaged(u64),
    /// More usable regions than `MAX_REGIONS`; the region was not added.
    TooManyRegions { start: u64, end: u64 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FrameError::Unaligned(a) => write!(f, "{a:#x} is not a frame address (not 4 KiB aligned)"),
            FrameError::NotManaged(a) => write!(f, "frame {a:#x} was not handed out by this allocator"),
            FrameError::TooManyRegions { start, end } => {
                write!(f, "region {start:#x}..{end:#x} ignored: more than {MAX_REGIONS} regions")
            }
        }
    }
}

/// Counters, in frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    pub total: u64,
    pub allocated: u64,
}

impl FrameStats {
    pub fn free(&self) -> u64 {
        self.total - self.allocated
    }
}

pub struct FrameAllocator<L> {
    links: L,
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    /// Region the cursor is in, and the next never-used frame in it.
    cursor_region: usize,
    cursor: u64,
    free_head: u64,
    stats: FrameStats,
}

impl<L: FrameLinks> FrameAllocator<L> {
    pub const fn new(links: L) -> Self {
        FrameAllocator {
            links,
            regions: [Region { start: 0, end: 0 }; MAX_REGIONS],
            nregions: 0,
            cursor_region: 0,
            cursor: 0,
            free_head: NIL,
            stats: FrameStats { total: 0, allocated: 0 },
        }
    }

    /// Adds usable physical memory `[start, end)`; partial frames at the edges and frame 0 are
    /// left out. Regions must be added in increasing address order, before the first allocation.
    pub fn add_region(&mut self, start: u64, end: u64) -> Result<(), FrameError> {
        let start = align_up(start.max(PAGE_SIZE), PAGE_SIZE);
        let end = align_down(end, PAGE_SIZE);
        if end <= start {
            return Ok(());
        }
        if self.nregions == MAX_REGIONS {
            return Err(FrameError::TooManyRegions { start, end });
        }
        self.regions[self.nregions] = Region { start, end };
        if self.nregions == 0 {
            self.cursor = start;
        }
        self.nregions += 1;
        self.stats.total += (end - start) / PAGE_SIZE;
        Ok(())
    }

    pub fn alloc(&mut self) -> Option<u64> {
        let frame = if self.free_head != NIL {
            let frame = self.free_head;
            self.free_head = self.links.read_link(frame);
            frame
        } else {
            loop {
                let region = self.regions.get(self.cursor_region).filter(|_| self.cursor_region < self.nregions)?;
                if self.cursor < region.end {
                    let frame = self.cursor;
                    self.cursor += PAGE_SIZE;
                    break frame;
                }
                self.cursor_region += 1;
                if let Some(next) = self.regions.get(self.cursor_region) {
                    self.cursor = next.start;
                }
            }
        };
        self.stats.allocated += 1;
        Some(frame)
    }

    /// `n` physically contiguous frames that are never given back (device memory set aside at
    /// boot); returns the first. They come from the never-used part of the current region, or
    /// else from the end of a later region (which then ends before them). `None` if no region
    /// has `n` untouched frames.
    pub fn alloc_contiguous(&mut self, n: u64) -> Option<u64> {
        let bytes = n.checked_mul(PAGE_SIZE).filter(|&b| b > 0)?;
        for i in self.cursor_region..self.nregions {
            let region = self.regions[i];
            let free_from = if i == self.cursor_region { self.cursor } else { region.start };
            if region.end - free_from < bytes {
                continue;
            }
            let first = if i == self.cursor_region {
                self.cursor += bytes;
                free_from
            } else {
                self.regions[i].end -= bytes;
                region.end - bytes
            };
            self.stats.allocated += n;
            return Some(first);
        }
        None
    }

    /// Returns a frame. Checks that it is a frame this allocator handed out; a frame freed twice
    /// is not detected (that would need a bitmap per frame).
    pub fn free(&mut self, frame: u64) -> Result<(), FrameError> {
        if frame % PAGE_SIZE != 0 {
            return Err(FrameError::Unaligned(frame));
        }
        if !self.was_handed_out(frame) {
            return Err(FrameError::NotManaged(frame));
        }
        self.links.write_link(frame, self.free_head);
        self.free_head = frame;
        self.stats.allocated -= 1;
        Ok(())
    }

    fn was_handed_out(&self, frame: u64) -> bool {
        self.regions[..self.nregions].iter().enumerate().any(|(i, r)| {
            frame >= r.start
                && frame < r.end
                && (i < self.cursor_region || (i == self.cursor_region && frame < self.cursor))
        })
    }

    pub fn stats(&self) -> FrameStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct MapLinks(HashMap<u64, u64>);

    impl FrameLinks for MapLinks {
        fn read_link(&self, frame: u64) -> u64 {
            self.0[&frame]
        }
        fn write_link(&mut self, frame: u64, next: u64) {
            self.0.insert(frame, next);
        }
    }

    fn allocator() -> FrameAllocator<MapLinks> {
        let mut a = FrameAllocator::new(MapLinks::default());
        a.add_region(0, 0x3000).unwrap(); // frame 0 is skipped: 2 frames
        a.add_region(0x10_0800, 0x10_3000).unwrap(); // partial first frame skipped: 2 frames
        a
    }

    #[test]
    fn contiguous_frames_come_from_untouched_memory_and_are_never_handed_out_again() {
        let mut a = allocator();
        assert_eq!(a.alloc_contiguous(3), None, "no region has 3 frames");
        assert_eq!(a.alloc_contiguous(2), Some(0x1000));
        assert_eq!(a.stats().allocated, 2);
        assert_eq!(a.alloc_contiguous(1), Some(0x10_2000), "from the end of the next region");
        assert_eq!(a.alloc(), Some(0x10_1000), "single frames go on from the next region");
        assert_eq!(a.alloc(), None, "the frame taken from the end is not handed out again");
        assert_eq!(a.stats().free(), 0);
        assert_eq!(a.alloc_contiguous(0), None);
    }

    #[test]
    fn hands_out_every_usable_frame_once_then_runs_dry() {
        let mut a = allocator();
        assert_eq!(a.stats().total, 4);
        let got: Vec<u64> = std::iter::from_fn(|| a.alloc()).collect();
        assert_eq!(got, vec![0x1000, 0x2000, 0x10_1000, 0x10_2000]);
        assert_eq!(a.stats().free(), 0);
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn freed_frames_are_reused_last_in_first_out() {
        let mut a = allocator();
        let f1 = a.alloc().unwrap();
        let f2 = a.alloc().unwrap();
        a.free(f1).unwrap();
        a.free(f2).unwrap();
        assert_eq!(a.stats().allocated, 0);
        assert_eq!(a.alloc(), Some(f2));
        assert_eq!(a.alloc(), Some(f1));
        assert_eq!(a.alloc(), Some(0x10_1000));
    }

    #[test]
    fn rejects_frames_it_did_not_hand_out() {
        let mut a = allocator();
        let f = a.alloc().unwrap();
        assert_eq!(a.free(f + 8), Err(FrameError::Unaligned(f + 8)));
        assert_eq!(a.free(0x2000), Err(FrameError::NotManaged(0x2000)));
        assert_eq!(a.free(0x50_0000), Err(FrameError::NotManaged(0x50_0000)));
        assert_eq!(a.stats().allocated, 1);
    }

    #[test]
    fn too_many_regions_is_an_error_not_a_panic() {
        let mut a = FrameAllocator::new(MapLinks::default());
        for i in 0..MAX_REGIONS as u64 {
            a.add_region(0x10_0000 * (i + 1), 0x10_0000 * (i + 1) + 0x1000).unwrap();
        }
        assert!(matches!(a.add_region(0x1_0000_0000, 0x1_0000_1000), Err(FrameError::TooManyRegions { .. })));
        assert_eq!(a.stats().total, MAX_REGIONS as u64);
    }
}
