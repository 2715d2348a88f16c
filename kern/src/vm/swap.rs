//! The swap disk: the second virtio disk (`vdb`), cut into page-sized slots. Slots come from one
//! global map; reads and writes sleep on the disk (thread context only, no lock held).
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, Once};

use super::slots::{Slot, SlotError, SlotMap};
use crate::dev::virtio_blk::{self, Disk};
use crate::memory::PAGE_SIZE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapError {
    /// No second disk: nothing can be swapped out.
    NoDisk,
    /// Every slot is in use.
    Full,
    /// The disk reported an error for the slot.
    Io(Slot),
    NoMemory,
}

impl fmt::Display for SwapError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SwapError::NoDisk => write!(f, "no swap disk (vdb)"),
            SwapError::Full => write!(f, "out of swap space"),
            SwapError::Io(s) => write!(f, "swap disk I/O error at slot {}", s.0),
            SwapError::NoMemory => write!(f, "no kernel memory for a swap transfer"),
        }
    }
}

static DISK: Once<Option<Arc<Disk>>> = Once::new();
static SLOTS: Mutex<SlotMap> = Mutex::new(SlotMap::new());
/// A cap on the slots handed out below the disk's size (tests of running out of swap).
static CAP: AtomicU64 = AtomicU64::new(u64::MAX);
static WRITES: AtomicU64 = AtomicU64::new(0);
static READS: AtomicU64 = AtomicU64::new(0);

/// The swap disk, found on first use (vdb, the second disk in PCI order). The in-kernel test
/// build has none: its disks are test images the host checks afterwards, which swapping would
/// overwrite (swap is tested end to end, where vdb is build/swap.img).
fn disk() -> Option<&'static Arc<Disk>> {
    DISK.call_once(|| {
        if cfg!(feature = "ktest") {
            return None;
        }
        let d = virtio_blk::disks().into_iter().nth(1)?;
        let slots = (d.sectors() / Slot::SECTORS).min(u64::from(u32::MAX)) as u32;
        let ok = crate::arch::without_interrupts(|| SLOTS.lock().resize(slots));
        if !ok {
            log::error!("swap: no memory for the slot map of {}", d.name);
            return None;
        }
        log::info!("swap: {} with {slots} slots of {} KiB", d.name, PAGE_SIZE / 1024);
        Some(d)
    })
    .as_ref()
}

/// Slots of pages whose write was in flight when their process ended, with when: a slot is
/// handed out again only once that write must have landed.
static QUARANTINE: Mutex<Vec<(Slot, u64)>> = Mutex::new(Vec::new());
/// How long a quarantined slot waits (a page write takes milliseconds).
const QUARANTINE_MS: u64 = 1000;

/// Frees `slot` once a write that may still be on its way to it has landed.
pub fn free_slot_later(slot: Slot) {
    let now = crate::time::uptime_ms();
    let queued = crate::arch::without_interrupts(|| {
        let mut q = QUARANTINE.lock();
        q.try_reserve(1).is_ok() && {
            q.push((slot, now));
            true
        }
    });
    if !queued {
        // No memory to remember it: freeing it now is the lesser harm than losing it.
        free_slot(slot);
    }
}

pub fn alloc_slot() -> Result<Slot, SwapError> {
    disk().ok_or(SwapError::NoDisk)?;
    let now = crate::time::uptime_ms();
    crate::arch::without_interrupts(|| {
        let mut m = SLOTS.lock();
        QUARANTINE.lock().retain(|&(slot, since)| {
            let keep = now.saturating_sub(since) < QUARANTINE_MS;
            if !keep {
                let _ = m.free(slot);
            }
            keep
        });
        if u64::from(m.in_use()) >= CAP.load(Ordering::Relaxed) {
            return Err(SwapError::Full);
        }
        m.alloc().map_err(|_| SwapError::Full)
    })
}

pub fn free_slot(slot: Slot) {
    let r = crate::arch::without_interrupts(|| SLOTS.lock().free(slot));
    if let Err(SlotError::NotInUse(s)) = r {
        log::error!("swap: slot {} freed twice", s.0);
    }
}

/// Slots in use in the whole system, and their number.
pub fn slots_in_use() -> (u32, u32) {
    crate::arch::without_interrupts(|| {
        let m = SLOTS.lock();
        (m.in_use(), m.capacity())
    })
}

/// Pages written to and read from swap since boot.
pub fn io_counts() -> (u64, u64) {
    (WRITES.load(Ordering::Relaxed), READS.load(Ordering::Relaxed))
}

/// Caps the slots in use (`u64::MAX`: the disk's size); for tests.
pub fn set_cap(slots: u64) {
    CAP.store(slots, Ordering::Relaxed);
}

/// Writes one page to `slot` and sleeps until the disk has it.
pub fn write_page(slot: Slot, bytes: Vec<u8>) -> Result<(), SwapError> {
    let d = disk().ok_or(SwapError::NoDisk)?;
    d.write_sync(slot.first_sector(), bytes).map_err(|_| SwapError::Io(slot))?;
    WRITES.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Reads the page in `slot`, sleeping until it arrives.
pub fn read_page(slot: Slot) -> Result<Vec<u8>, SwapError> {
    let d = disk().ok_or(SwapError::NoDisk)?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(PAGE_SIZE as usize).map_err(|_| SwapError::NoMemory)?;
    buf.resize(PAGE_SIZE as usize, 0);
    let bytes = d.read_sync(slot.first_sector(), buf).map_err(|_| SwapError::Io(slot))?;
    READS.fetch_add(1, Ordering::Relaxed);
    if bytes.len() != PAGE_SIZE as usize {
        return Err(SwapError::Io(slot));
    }
    Ok(bytes)
}
