//! Page tables: the four-level x86-64 tables behind a small interface (map, unmap, protect,
//! query, and the hardware's accessed and dirty bits), for the kernel's own address space and
//! for user address spaces alike. Generic code names pages by address and rights; only this
//! module knows entries, flags, CR3 and TLB invalidation.
//!
//! Tables are reached through the bootloader's mapping of all physical memory (the physical
//! window). Every edit, in any address space, is serialised by one lock. Frames for
//! intermediate tables come from the `FrameSource` the kernel registers at `init`.
use core::fmt;

use ::x86_64::registers::control::{Cr3, Cr3Flags};
use ::x86_64::structures::paging::mapper::{MapToError, MapperFlush, TranslateResult, UnmapError};
use ::x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
    Translate,
};
use ::x86_64::{PhysAddr, VirtAddr};
use spin::{Mutex, Once};

/// Where physical frames come from (and go back to) when a table is needed or freed.
pub trait FrameSource: Sync {
    fn alloc(&self) -> Option<PhysFrame>;
    fn free(&self, frame: PhysFrame);
}

static PHYS_OFFSET: Once<u64> = Once::new();
static FRAMES: Once<&'static dyn FrameSource> = Once::new();
/// Serialises every page-table edit (all address spaces share the kernel's higher half).
static EDIT: Mutex<()> = Mutex::new(());

/// Registers the physical window's offset and the kernel's frame source (once, at boot).
pub fn init(phys_offset: u64, frames: &'static dyn FrameSource) {
    PHYS_OFFSET.call_once(|| phys_offset);
    FRAMES.call_once(|| frames);
}

/// The virtual address at which physical address `phys` is mapped (the physical window).
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(PHYS_OFFSET.get().copied().unwrap_or(0) + phys.as_u64())
}

/// Why a mapping operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No free frame for the page or for an intermediate page table.
    OutOfFrames,
    /// The page is already mapped.
    AlreadyMapped(VirtAddr),
    /// The page is not mapped.
    NotMapped(VirtAddr),
    /// The page is part of a huge-page mapping, which these functions do not split.
    HugePage(VirtAddr),
    /// Paging was not initialised yet.
    NotReady,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            MapError::OutOfFrames => write!(f, "out of physical frames"),
            MapError::AlreadyMapped(v) => write!(f, "page {:#x} is already mapped", v.as_u64()),
            MapError::NotMapped(v) => write!(f, "page {:#x} is not mapped", v.as_u64()),
            MapError::HugePage(v) => write!(f, "page {:#x} is inside a huge page", v.as_u64()),
            MapError::NotReady => write!(f, "paging is not initialised"),
        }
    }
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rights {
    pub write: bool,
    pub exec: bool,
    /// Reachable from user mode.
    pub user: bool,
    /// Device memory: uncached.
    pub device: bool,
}

impl Rights {
    /// Kernel data: read and write, never executed.
    pub const KERNEL_DATA: Rights = Rights { write: true, exec: false, user: false, device: false };
    /// Kernel code: read and execute, never written.
    pub const KERNEL_CODE: Rights = Rights { write: false, exec: true, user: false, device: false };
    /// Device registers.
    pub const DEVICE: Rights = Rights { write: true, exec: false, user: false, device: true };

    fn flags(self) -> PageTableFlags {
        let mut f = PageTableFlags::PRESENT;
        if self.write {
            f |= PageTableFlags::WRITABLE;
        }
        if !self.exec {
            f |= PageTableFlags::NO_EXECUTE;
        }
        if self.user {
            f |= PageTableFlags::USER_ACCESSIBLE;
        }
        if self.device {
            f |= PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH;
        }
        f
    }

    fn from_flags(f: PageTableFlags) -> Rights {
        Rights {
            write: f.contains(PageTableFlags::WRITABLE),
            exec: !f.contains(PageTableFlags::NO_EXECUTE),
            user: f.contains(PageTableFlags::USER_ACCESSIBLE),
            device: f.contains(PageTableFlags::NO_CACHE),
        }
    }
}

/// A mapped page as the tables describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    /// The physical address `va` translates to.
    pub phys: PhysAddr,
    pub rights: Rights,
    /// The hardware set these since they were last cleared.
    pub accessed: bool,
    pub dirty: bool,
}

/// The top-level table of an address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root(PhysFrame);

impl Root {
    /// The address space the CPU runs in now.
    pub fn active() -> Root {
        Root(Cr3::read().0)
    }

    pub fn is_active(self) -> bool {
        Cr3::read().0 == self.0
    }

    /// Switches the CPU to this address space.
    ///
    /// # Safety
    /// The space must map the kernel's higher half exactly as the current one does.
    pub unsafe fn activate(self) {
        // SAFETY: the caller's contract.
        unsafe { Cr3::write(self.0, Cr3Flags::empty()) };
    }

    /// A new user address space: an empty lower half and the higher half of `kernel` (the same
    /// entries, so kernel mappings made later under them are shared).
    pub fn new_user(kernel: Root) -> Result<Root, MapError> {
        let frames = FRAMES.get().ok_or(MapError::NotReady)?;
        let frame = frames.alloc().ok_or(MapError::OutOfFrames)?;
        // SAFETY: `frame` is fresh and ours; the kernel's table is only read; both are reached through the physical window.
        unsafe {
            let new = &mut *phys_to_virt(frame.start_address()).as_mut_ptr::<PageTable>();
            let old = &*phys_to_virt(kernel.0.start_address()).as_ptr::<PageTable>();
            for i in 0..256 {
                new[i].set_unused();
            }
            for i in 256..512 {
                new[i] = old[i].clone();
            }
        }
        Ok(Root(frame))
    }

    /// Frees the lower half's tables and the root itself (not the pages they mapped: the
    /// address space frees those).
    ///
    /// # Safety
    /// The space must not be active on any CPU and must not be used again.
    pub unsafe fn free_user(self) {
        let Some(frames) = FRAMES.get() else { return };
        let _edit = EDIT.lock();
        // SAFETY: the caller's contract: nothing uses the tables any more.
        unsafe {
            let p4 = &mut *phys_to_virt(self.0.start_address()).as_mut_ptr::<PageTable>();
            for i in 0..256 {
                if p4[i].flags().contains(PageTableFlags::PRESENT) {
                    if let Ok(f3) = p4[i].frame() {
                        free_table(*frames, f3, 3);
                    }
                }
                p4[i].set_unused();
            }
        }
        frames.free(self.0);
    }

    /// Whether top-level slot `slot` (0..512) is unused.
    pub fn slot_unused(self, slot: usize) -> bool {
        // SAFETY: the root is a live top-level table, reached through the physical window; only read.
        let table = unsafe { &*phys_to_virt(self.0.start_address()).as_ptr::<PageTable>() };
        table.iter().nth(slot).is_some_and(|e| e.is_unused())
    }
}

/// Frees a page table of `level` (3, 2 or 1) and the tables below it (not the leaf frames).
///
/// # Safety
/// The caller owns the table and nothing uses it.
unsafe fn free_table(frames: &dyn FrameSource, frame: PhysFrame, level: u8) {
    if level > 1 {
        // SAFETY: the caller owns the table; it is reached through the physical window.
        let table = unsafe { &*phys_to_virt(frame.start_address()).as_ptr::<PageTable>() };
        for e in table.iter() {
            if e.flags().contains(PageTableFlags::PRESENT) && !e.flags().contains(PageTableFlags::HUGE_PAGE) {
                if let Ok(f) = e.frame() {
                    // SAFETY: a child table of a table we own.
                    unsafe { free_table(frames, f, level - 1) };
                }
            }
        }
    }
    frames.free(frame);
}

/// Adapter so the `x86_64` crate's mapper takes table frames from the registered source.
struct Tables(&'static dyn FrameSource);

// SAFETY: the source hands out each frame at most once until it is freed.
unsafe impl FrameAllocator<Size4KiB> for Tables {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.0.alloc()
    }
}

impl FrameDeallocator<Size4KiB> for Tables {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        self.0.free(frame);
    }
}

/// Runs `f` on the tables rooted at `root`, with every other edit held off.
fn edit<R>(root: Root, f: impl FnOnce(&mut OffsetPageTable<'static>, &mut Tables) -> R) -> Result<R, MapError> {
    let (Some(&offset), Some(&frames)) = (PHYS_OFFSET.get(), FRAMES.get()) else { return Err(MapError::NotReady) };
    super::without_interrupts(|| {
        let _edit = EDIT.lock();
        // SAFETY: `root` is a top-level table owned by an address space (or the kernel's), reached through the physical window; the lock above makes this the only view being edited.
        let table = unsafe { &mut *phys_to_virt(root.0.start_address()).as_mut_ptr::<PageTable>() };
        // SAFETY: as above; `offset` is the physical window's.
        let mut pt = unsafe { OffsetPageTable::new(table, VirtAddr::new(offset)) };
        Ok(f(&mut pt, &mut Tables(frames)))
    })
}

/// Invalidates the TLB entry of a page whose entry changed, when this CPU may hold it: the
/// space is active, or the page is in the shared higher half. (An inactive space's entries
/// are dropped at the switch to it.)
fn flush(root: Root, page: Page, f: MapperFlush<Size4KiB>) {
    if root.is_active() || page.start_address().as_u64() >= 0xFFFF_8000_0000_0000 {
        f.flush();
    } else {
        f.ignore();
    }
}

fn page_of(va: VirtAddr) -> Page {
    Page::<Size4KiB>::containing_address(va)
}

/// Maps the page at `va` to `frame` with `rights` in the space `root`; intermediate tables a
/// user page needs are user-reachable (the leaf decides the page's own rights).
pub fn map(root: Root, va: VirtAddr, frame: PhysFrame, rights: Rights) -> Result<(), MapError> {
    let page = page_of(va);
    let mut parent = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    if rights.user {
        parent |= PageTableFlags::USER_ACCESSIBLE;
    }
    edit(root, |pt, tables| {
        // SAFETY: callers map frames they own (fresh from the allocator, or device memory) at pages that are not mapped: `map_to` refuses a mapped page, so no live mapping is replaced.
        match unsafe { pt.map_to_with_table_flags(page, frame, rights.flags(), parent, tables) } {
            Ok(f) => {
                flush(root, page, f);
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err(MapError::OutOfFrames),
            Err(MapToError::PageAlreadyMapped(_)) => Err(MapError::AlreadyMapped(page.start_address())),
            Err(MapToError::ParentEntryHugePage) => Err(MapError::HugePage(page.start_address())),
        }
    })?
}

/// Unmaps the page at `va` and returns the frame it was mapped to (the caller decides whether
/// to free it).
pub fn unmap(root: Root, va: VirtAddr) -> Result<PhysFrame, MapError> {
    let page = page_of(va);
    edit(root, |pt, _| match pt.unmap(page) {
        Ok((frame, f)) => {
            flush(root, page, f);
            Ok(frame)
        }
        Err(UnmapError::PageNotMapped) | Err(UnmapError::InvalidFrameAddress(_)) => {
            Err(MapError::NotMapped(page.start_address()))
        }
        Err(UnmapError::ParentEntryHugePage) => Err(MapError::HugePage(page.start_address())),
    })?
}

/// Sets the rights of the mapped page at `va` (its accessed and dirty bits are kept).
pub fn protect(root: Root, va: VirtAddr, rights: Rights) -> Result<(), MapError> {
    let page = page_of(va);
    edit(root, |pt, _| {
        let keep = match pt.translate(page.start_address()) {
            TranslateResult::Mapped { flags, .. } => flags & (PageTableFlags::ACCESSED | PageTableFlags::DIRTY),
            _ => return Err(MapError::NotMapped(page.start_address())),
        };
        // SAFETY: changing the rights of a page the caller owns does not break memory safety of code that respects those rights.
        match unsafe { pt.update_flags(page, rights.flags() | keep) } {
            Ok(f) => {
                flush(root, page, f);
                Ok(())
            }
            Err(_) => Err(MapError::NotMapped(page.start_address())),
        }
    })?
}

/// What the page at `va` is mapped to, if it is.
pub fn query(root: Root, va: VirtAddr) -> Option<PageInfo> {
    edit(root, |pt, _| match pt.translate(va) {
        TranslateResult::Mapped { frame, offset, flags } => Some(PageInfo {
            phys: frame.start_address() + offset,
            rights: Rights::from_flags(flags),
            accessed: flags.contains(PageTableFlags::ACCESSED),
            dirty: flags.contains(PageTableFlags::DIRTY),
        }),
        _ => None,
    })
    .ok()
    .flatten()
}

/// Clears `bit` (ACCESSED or DIRTY) of the page at `va`; returns whether it was set, `None` if
/// the page is not mapped. The TLB entry is invalidated, so the next access sets it again.
fn take_bit(root: Root, va: VirtAddr, bit: PageTableFlags) -> Option<bool> {
    let page = page_of(va);
    edit(root, |pt, _| {
        let TranslateResult::Mapped { flags, .. } = pt.translate(page.start_address()) else { return None };
        let was = flags.contains(bit);
        if was {
            // SAFETY: only the accessed/dirty bookkeeping bit changes; rights and frame stay.
            if let Ok(f) = unsafe { pt.update_flags(page, flags - bit) } {
                flush(root, page, f);
            }
        }
        Some(was)
    })
    .ok()
    .flatten()
}

/// Test-and-clear of the hardware's accessed (referenced) bit of the page at `va`.
pub fn take_accessed(root: Root, va: VirtAddr) -> Option<bool> {
    take_bit(root, va, PageTableFlags::ACCESSED)
}

/// Test-and-clear of the hardware's dirty bit of the page at `va` (after its contents were
/// saved).
pub fn take_dirty(root: Root, va: VirtAddr) -> Option<bool> {
    take_bit(root, va, PageTableFlags::DIRTY)
}
