//! The kernel's memory: the frame allocator over the boot memory map, page-table management over
//! the bootloader's mapping of all physical memory, virtual-address windows, and the heap.
use core::alloc::{GlobalAlloc, Layout};
use core::fmt;

use ::x86_64::registers::control::Cr3;
use ::x86_64::structures::paging::mapper::{MapToError, MapperFlush, TranslateResult, UnmapError};
use ::x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page,
    PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate,
};
use ::x86_64::{PhysAddr, VirtAddr};
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use buddy_system_allocator::{Heap, LockedHeapWithRescue};
use spin::{Mutex, Once};

use super::frame::{FrameAllocator, FrameError, FrameLinks, FrameStats};
use super::{PAGE_SIZE, grow};
use crate::arch;

static PHYS_OFFSET: Once<u64> = Once::new();

/// The virtual address at which physical address `phys` is mapped.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(PHYS_OFFSET.get().expect("memory::init has run") + phys.as_u64())
}

/// Free-list links live in the first word of each free frame, reached through the physical map.
pub struct PhysMapLinks;

impl FrameLinks for PhysMapLinks {
    fn read_link(&self, frame: u64) -> u64 {
        // SAFETY: `frame` is a free frame owned by the allocator, mapped through the physical memory window; its first word is the link written by `write_link`.
        unsafe { *phys_to_virt(PhysAddr::new(frame)).as_ptr::<u64>() }
    }
    fn write_link(&mut self, frame: u64, next: u64) {
        // SAFETY: as above; the frame was just returned to the allocator, nobody else uses it.
        unsafe { *phys_to_virt(PhysAddr::new(frame)).as_mut_ptr::<u64>() = next }
    }
}

static FRAMES: Mutex<FrameAllocator<PhysMapLinks>> = Mutex::new(FrameAllocator::new(PhysMapLinks));

pub fn alloc_frame() -> Option<PhysFrame> {
    let addr = arch::without_interrupts(|| FRAMES.lock().alloc())?;
    Some(PhysFrame::containing_address(PhysAddr::new(addr)))
}

pub fn free_frame(frame: PhysFrame) -> Result<(), FrameError> {
    arch::without_interrupts(|| FRAMES.lock().free(frame.start_address().as_u64()))
}

pub fn frame_stats() -> FrameStats {
    arch::without_interrupts(|| FRAMES.lock().stats())
}

/// Adapter so the `x86_64` crate's mapper can take page-table frames from our allocator.
struct PageTableFrames;

// SAFETY: `alloc_frame` hands out each frame at most once until it is freed.
unsafe impl X86FrameAllocator<Size4KiB> for PageTableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        alloc_frame()
    }
}

impl FrameDeallocator<Size4KiB> for PageTableFrames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        if let Err(e) = free_frame(frame) {
            log::error!("page-table frame: {e}");
        }
    }
}

static MAPPER: Once<Mutex<OffsetPageTable<'static>>> = Once::new();

fn mapper() -> &'static Mutex<OffsetPageTable<'static>> {
    MAPPER.get().expect("memory::init has run")
}

/// Why a mapping operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No free frame for the page or for an intermediate page table.
    OutOfFrames,
    /// The page is already mapped (to the given frame).
    AlreadyMapped(VirtAddr),
    /// The page is not mapped.
    NotMapped(VirtAddr),
    /// The page is part of a huge-page mapping, which these functions do not split.
    HugePage(VirtAddr),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            MapError::OutOfFrames => write!(f, "out of physical frames"),
            MapError::AlreadyMapped(v) => write!(f, "page {:#x} is already mapped", v.as_u64()),
            MapError::NotMapped(v) => write!(f, "page {:#x} is not mapped", v.as_u64()),
            MapError::HugePage(v) => write!(f, "page {:#x} is inside a huge page", v.as_u64()),
        }
    }
}

fn flush(f: MapperFlush<Size4KiB>) {
    f.flush();
}

/// Maps `page` to `frame` with `flags` (PRESENT is added).
pub fn map(page: Page, frame: PhysFrame, flags: PageTableFlags) -> Result<(), MapError> {
    let va = page.start_address();
    arch::without_interrupts(|| {
        let mut m = mapper().lock();
        // SAFETY: callers map frames they own (fresh from the allocator, or device memory); mapping never aliases kernel data because only unmapped pages can be mapped here.
        match unsafe { m.map_to(page, frame, flags | PageTableFlags::PRESENT, &mut PageTableFrames) } {
            Ok(f) => {
                flush(f);
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err(MapError::OutOfFrames),
            Err(MapToError::PageAlreadyMapped(_)) => Err(MapError::AlreadyMapped(va)),
            Err(MapToError::ParentEntryHugePage) => Err(MapError::HugePage(va)),
        }
    })
}

/// Unmaps `page` and returns the frame it was mapped to (the caller decides whether to free it).
pub fn unmap(page: Page) -> Result<PhysFrame, MapError> {
    let va = page.start_address();
    arch::without_interrupts(|| {
        let mut m = mapper().lock();
        match m.unmap(page) {
            Ok((frame, f)) => {
                flush(f);
                Ok(frame)
            }
            Err(UnmapError::PageNotMapped) => Err(MapError::NotMapped(va)),
            Err(UnmapError::ParentEntryHugePage) => Err(MapError::HugePage(va)),
            Err(UnmapError::InvalidFrameAddress(_)) => Err(MapError::NotMapped(va)),
        }
    })
}

/// Changes the flags of a mapped page.
pub fn update_flags(page: Page, flags: PageTableFlags) -> Result<(), MapError> {
    let va = page.start_address();
    arch::without_interrupts(|| {
        let mut m = mapper().lock();
        // SAFETY: changing the rights of a page the caller owns does not break memory safety of code that respects those rights; callers own the pages they change.
        match unsafe { m.update_flags(page, flags | PageTableFlags::PRESENT) } {
            Ok(f) => {
                flush(f);
                Ok(())
            }
            Err(_) => Err(MapError::NotMapped(va)),
        }
    })
}

/// The frame and flags `addr` is mapped with, if any.
pub fn translate(addr: VirtAddr) -> Option<(PhysAddr, PageTableFlags)> {
    arch::without_interrupts(|| match mapper().lock().translate(addr) {
        TranslateResult::Mapped { frame, offset, flags } => Some((frame.start_address() + offset, flags)),
        _ => None,
    })
}

/// Maps fresh, zeroed frames over `[start, start + len)`.
pub fn map_fresh(start: VirtAddr, len: u64, flags: PageTableFlags) -> Result<(), MapError> {
    let first = Page::<Size4KiB>::containing_address(start);
    let last = Page::<Size4KiB>::containing_address(start + (len.max(1) - 1));
    for page in Page::range_inclusive(first, last) {
        let mapped = alloc_frame().ok_or(MapError::OutOfFrames).and_then(|frame| {
            // SAFETY: the frame is fresh from the allocator and reached through the physical map.
            unsafe { core::ptr::write_bytes(phys_to_virt(frame.start_address()).as_mut_ptr::<u8>(), 0, PAGE_SIZE as usize) };
            map(page, frame, flags).inspect_err(|_| {
                let _ = free_frame(frame);
            })
        });
        if let Err(e) = mapped {
            // Give back what this call mapped: a failure (out of memory) loses no frames.
            for done in Page::range(first, page) {
                if let Ok(frame) = unmap(done) {
                    let _ = free_frame(frame);
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// A window of kernel virtual address space: one whole level-4 slot (512 GiB), handed out front
/// to back.
struct Window {
    next: u64,
    end: u64,
}

impl Window {
    /// Hands out `pages` pages followed by `guard` unmapped pages; returns the first address.
    fn reserve(&mut self, pages: u64, guard: u64) -> Result<u64, MapError> {
        let base = self.next;
        let end = pages.checked_add(guard).and_then(|n| n.checked_mul(PAGE_SIZE)).and_then(|n| base.checked_add(n));
        match end {
            Some(end) if end <= self.end => {
                self.next = end;
                Ok(base)
            }
            _ => Err(MapError::OutOfFrames),
        }
    }
}

/// Finds an unused level-4 entry in the higher half: our windows can never collide with what the
/// bootloader mapped (kernel image, stack, physical memory).
fn reserve_l4_slot(taken: &mut [bool; 512]) -> Option<VirtAddr> {
    // SAFETY: CR3 holds the active level-4 table, mapped through the physical window.
    let table = unsafe { &*phys_to_virt(Cr3::read().0.start_address()).as_ptr::<PageTable>() };
    let slot = (256..512).find(|&i| table[i].is_unused() && !taken[i])?;
    taken[slot] = true;
    // Sign-extend bit 47 for the canonical higher-half address.
    Some(VirtAddr::new(0xFFFF_0000_0000_0000 | ((slot as u64) << 39)))
}

static MMIO: Mutex<Window> = Mutex::new(Window { next: 0, end: 0 });
static CODE: Mutex<Window> = Mutex::new(Window { next: 0, end: 0 });

/// Machine code the kernel generated, published read-only and executable. It was written
/// through a writable mapping that no longer exists: no page is ever writable and executable at
/// once. Dropping it unmaps the pages and frees their frames.
pub struct ExecCode {
    base: VirtAddr,
    len: usize,
    pages: u64,
}

impl ExecCode {
    /// Address of the first byte.
    pub fn base(&self) -> VirtAddr {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `addr` lies inside this code.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base.as_u64() && addr < self.base.as_u64() + self.len as u64
    }

    /// The published bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the pages stay mapped (read-only) for as long as `self` lives.
        unsafe { core::slice::from_raw_parts(self.base.as_ptr::<u8>(), self.len) }
    }
}

impl Drop for ExecCode {
    fn drop(&mut self) {
        for i in 0..self.pages {
            let page = Page::<Size4KiB>::containing_address(self.base + i * PAGE_SIZE);
            match unmap(page) {
                Ok(frame) => {
                    if let Err(e) = free_frame(frame) {
                        log::error!("freeing code frame: {e}");
                    }
                }
                Err(e) => log::error!("unmapping code: {e}"),
            }
        }
    }
}

/// Maps a kernel stack of `len` bytes (rounded up to pages) with an unmapped guard page below
/// it, so an overflow faults instead of corrupting memory. Returns (lowest address, top).
/// The stack lives as long as the kernel.
pub fn map_stack(len: u64) -> Result<(u64, u64), MapError> {
    let pages = len.div_ceil(PAGE_SIZE);
    // A guard page below the stack (the window's next page) and one after it.
    let bottom = CODE.lock().reserve(pages + 1, 1)? + PAGE_SIZE;
    map_fresh(VirtAddr::new(bottom), pages * PAGE_SIZE, PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE)?;
    Ok((bottom, bottom + pages * PAGE_SIZE))
}

/// A kernel stack from `map_stack` that is given back (pages unmapped, frames freed) when
/// dropped. The guard page below it stays unmapped: an overflow faults instead of silently
/// overwriting the heap.
pub struct KernelStack {
    bottom: u64,
    top: u64,
}

impl KernelStack {
    pub fn new(len: u64) -> Result<KernelStack, MapError> {
        let (bottom, top) = map_stack(len)?;
        Ok(KernelStack { bottom, top })
    }

    pub fn top(&self) -> u64 {
        self.top
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        let mut va = self.bottom;
        while va < self.top {
            if let Ok(frame) = unmap(Page::containing_address(VirtAddr::new(va))) {
                let _ = free_frame(frame);
            }
            va += PAGE_SIZE;
        }
    }
}

/// Copies `code` into fresh pages of the code window, then makes them read-only and
/// executable.
pub fn publish_code(code: &[u8]) -> Result<ExecCode, MapError> {
    let pages = (code.len().max(1) as u64).div_ceil(PAGE_SIZE);
    // One unmapped guard page between consecutive code blobs.
    let base = VirtAddr::new(CODE.lock().reserve(pages, 1)?);
    map_fresh(base, pages * PAGE_SIZE, PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE)?;
    // SAFETY: the range was just mapped writable for us alone.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), base.as_mut_ptr::<u8>(), code.len()) };
    let exec = ExecCode { base, len: code.len(), pages };
    for i in 0..pages {
        // Read-only and executable: PRESENT only (update_flags adds it), no WRITABLE, no NX.
        update_flags(Page::containing_address(base + i * PAGE_SIZE), PageTableFlags::empty())?;
    }
    Ok(exec)
}

/// Maps device memory (uncached) and returns its virtual address.
pub fn map_mmio(phys: PhysAddr, len: u64) -> Result<VirtAddr, MapError> {
    let offset = phys.as_u64() % PAGE_SIZE;
    let pages = (offset + len).div_ceil(PAGE_SIZE);
    let base = MMIO.lock().reserve(pages, 0)?;
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH | PageTableFlags::NO_EXECUTE;
    for i in 0..pages {
        let page = Page::containing_address(VirtAddr::new(base + i * PAGE_SIZE));
        let frame = PhysFrame::containing_address(phys + i * PAGE_SIZE);
        map(page, frame, flags)?;
    }
    Ok(VirtAddr::new(base + offset))
}

/// Size of the heap mapped at boot; it grows on demand beyond that.
const INITIAL_HEAP: u64 = 1024 * 1024;

static HEAP_TOP: Mutex<(u64, u64)> = Mutex::new((0, 0)); // (current end, window end)

/// The global allocator: the buddy allocator, with interrupts held off while its lock is taken
/// (an interrupt handler, or a thread switched to from one, must never spin on a lock held by the
/// code it interrupted).
pub struct KernelHeap(LockedHeapWithRescue<32>);

// SAFETY: forwards to the buddy allocator, which upholds GlobalAlloc's contract.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        arch::without_interrupts(|| unsafe { self.0.alloc(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        arch::without_interrupts(|| unsafe { self.0.dealloc(ptr, layout) })
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(LockedHeapWithRescue::new(grow_heap));

/// Called by the buddy allocator, with its lock held, when a request does not fit: map more of
/// the heap window. Must not allocate from the heap itself.
fn grow_heap(heap: &mut Heap<32>, layout: &Layout) {
    let mut top = HEAP_TOP.lock();
    let (cur, end) = *top;
    let Some(new_top) = grow::new_heap_top(cur, layout.size(), layout.align()).filter(|&t| t <= end) else {
        return;
    };
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    if let Err(e) = map_fresh(VirtAddr::new(cur), new_top - cur, flags) {
        log::warn!("heap growth by {} KiB failed: {e}", (new_top - cur) / 1024);
        return;
    }
    // SAFETY: [cur, new_top) was just mapped and is used by nothing else.
    unsafe { heap.add_to_heap(cur as usize, new_top as usize) };
    top.0 = new_top;
}

#[derive(Clone, Copy, Debug)]
pub struct HeapStats {
    /// Bytes of address space mapped for the heap.
    pub mapped: u64,
    /// Bytes handed out to live allocations.
    pub allocated: usize,
}

pub fn heap_stats() -> HeapStats {
    let mapped = {
        let (cur, _) = *HEAP_TOP.lock();
        cur - HEAP_BASE.get().copied().unwrap_or(cur)
    };
    let allocated = arch::without_interrupts(|| HEAP.0.lock().stats_alloc_actual());
    HeapStats { mapped, allocated }
}

static HEAP_BASE: Once<u64> = Once::new();

/// The kernel's own level-4 table (the one the bootloader made), whose higher half every user
/// address space shares.
static KERNEL_P4: Once<PhysFrame> = Once::new();

pub fn kernel_p4() -> PhysFrame {
    *KERNEL_P4.get().expect("memory::init has run")
}

/// Runs `f` on the page tables rooted at `p4` (any address space, active or not).
pub(super) fn with_tables<R>(p4: PhysFrame, f: impl FnOnce(&mut OffsetPageTable<'static>, &mut dyn X86FrameAllocator<Size4KiB>) -> R) -> R {
    arch::without_interrupts(|| {
        // SAFETY: `p4` is a level-4 table owned by an address space (or the kernel's), reached through the physical window; the kernel lock below serialises all page-table edits.
        let table = unsafe { &mut *phys_to_virt(p4.start_address()).as_mut_ptr::<PageTable>() };
        let _guard = mapper().lock();
        // SAFETY: as above; the offset is the physical window's.
        let mut pt = unsafe { OffsetPageTable::new(table, VirtAddr::new(*PHYS_OFFSET.get().expect("init"))) };
        f(&mut pt, &mut PageTableFrames)
    })
}

/// Errors that stop memory initialisation (and so the boot).
#[derive(Debug)]
pub enum InitError {
    NoPhysicalMemoryMapping,
    NoFreeAddressSpace,
    Map(MapError),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            InitError::NoPhysicalMemoryMapping => write!(f, "the bootloader did not map physical memory"),
            InitError::NoFreeAddressSpace => write!(f, "no free level-4 slot for kernel windows"),
            InitError::Map(e) => write!(f, "{e}"),
        }
    }
}

pub fn init(phys_offset: Option<u64>, regions: &MemoryRegions) -> Result<(), InitError> {
    let offset = phys_offset.ok_or(InitError::NoPhysicalMemoryMapping)?;
    PHYS_OFFSET.call_once(|| offset);
    {
        let mut frames = FRAMES.lock();
        let mut usable: heapless_regions::Sorted = heapless_regions::Sorted::new();
        for r in regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable) {
            usable.push(r.start, r.end);
        }
        for (start, end) in usable.iter() {
            if let Err(e) = frames.add_region(start, end) {
                log::warn!("{e}");
            }
        }
    }
    // SAFETY: CR3 holds the active level-4 table; the physical window maps it at `offset`, and this is the only `OffsetPageTable` ever made for it.
    let l4 = unsafe { &mut *phys_to_virt(Cr3::read().0.start_address()).as_mut_ptr::<PageTable>() };
    // SAFETY: `offset` is where the bootloader mapped all of physical memory.
    MAPPER.call_once(|| Mutex::new(unsafe { OffsetPageTable::new(l4, VirtAddr::new(offset)) }));

    let mut taken = [false; 512];
    let heap = reserve_l4_slot(&mut taken).ok_or(InitError::NoFreeAddressSpace)?;
    let mmio = reserve_l4_slot(&mut taken).ok_or(InitError::NoFreeAddressSpace)?;
    *MMIO.lock() = Window { next: mmio.as_u64(), end: mmio.as_u64() + (1 << 39) };
    let code = reserve_l4_slot(&mut taken).ok_or(InitError::NoFreeAddressSpace)?;
    *CODE.lock() = Window { next: code.as_u64(), end: code.as_u64() + (1 << 39) };
    // User address spaces copy the kernel's level-4 entries when they are made: create the
    // tables under every window now, so that later mappings there are seen by all spaces.
    for window in [mmio, code] {
        let page = Page::<Size4KiB>::containing_address(window);
        map_fresh(window, PAGE_SIZE, PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE).map_err(InitError::Map)?;
        let frame = unmap(page).map_err(InitError::Map)?;
        let _ = free_frame(frame);
    }
    KERNEL_P4.call_once(|| Cr3::read().0);

    let base = heap.as_u64();
    map_fresh(heap, INITIAL_HEAP, PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE).map_err(InitError::Map)?;
    HEAP_BASE.call_once(|| base);
    *HEAP_TOP.lock() = (base + INITIAL_HEAP, base + (1 << 39));
    // SAFETY: the initial heap range was just mapped and is used by nothing else.
    unsafe { HEAP.0.lock().init(base as usize, INITIAL_HEAP as usize) };
    Ok(())
}

/// The boot memory map is not promised to be sorted; sort usable regions without a heap.
mod heapless_regions {
    pub struct Sorted {
        items: [(u64, u64); super::super::frame::MAX_REGIONS],
        len: usize,
    }

    impl Sorted {
        pub fn new() -> Self {
            Sorted { items: [(0, 0); super::super::frame::MAX_REGIONS], len: 0 }
        }
        /// Inserts in order; merges with a neighbour it touches; drops what does not fit.
        pub fn push(&mut self, start: u64, end: u64) {
            if let Some(last) = self.items[..self.len].iter_mut().find(|(_, e)| *e == start) {
                last.1 = end;
                return;
            }
            if self.len == self.items.len() {
                log::warn!("memory region {start:#x}..{end:#x} ignored: too many regions");
                return;
            }
            let pos = self.items[..self.len].iter().position(|&(s, _)| s > start).unwrap_or(self.len);
            self.items.copy_within(pos..self.len, pos + 1);
            self.items[pos] = (start, end);
            self.len += 1;
        }
        pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
            self.items[..self.len].iter().copied()
        }
    }
}

#[cfg(feature = "ktest")]
mod ktests {
    use alloc::vec::Vec;

    use super::*;
    use crate::{check, check_eq, ktest};

    ktest! {
        fn frame_alloc_free_round_trip() -> TestResult {
            let before = frame_stats();
            let frames: Vec<PhysFrame> = (0..64).filter_map(|_| alloc_frame()).collect();
            check_eq!(frames.len(), 64);
            check_eq!(frame_stats().allocated, before.allocated + 64);
            let mut addrs: Vec<u64> = frames.iter().map(|f| f.start_address().as_u64()).collect();
            addrs.sort_unstable();
            addrs.dedup();
            check_eq!(addrs.len(), 64);
            for f in &frames {
                check!(free_frame(*f).is_ok());
            }
            check_eq!(frame_stats(), before);
            // A freed frame is handed out again.
            let again = alloc_frame().ok_or_else(|| crate::ktest::TestFailure { message: "no frame".into(), file: file!(), line: line!() })?;
            check!(frames.contains(&again));
            check!(free_frame(again).is_ok());
            check!(free_frame(PhysFrame::containing_address(PhysAddr::new(0))).is_err());
            Ok(())
        }

        fn map_write_read_unmap() -> TestResult {
            let base = MMIO.lock().next; // an unused address inside a kernel window
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(base + (1 << 30)));
            let frame = alloc_frame().expect("a free frame");
            check!(map(page, frame, PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE).is_ok());
            check_eq!(map(page, frame, PageTableFlags::WRITABLE), Err(MapError::AlreadyMapped(page.start_address())));
            let ptr = page.start_address().as_mut_ptr::<u64>();
            // SAFETY: the page was just mapped writable and nothing else uses it.
            unsafe { ptr.write_volatile(0x1234_5678_9abc_def0) };
            // Read back through the physical window: the write reached the frame we mapped.
            // SAFETY: the frame is ours and mapped through the physical window.
            let via_phys = unsafe { phys_to_virt(frame.start_address()).as_ptr::<u64>().read_volatile() };
            check_eq!(via_phys, 0x1234_5678_9abc_def0);
            check_eq!(translate(page.start_address()).map(|(p, _)| p), Some(frame.start_address()));
            check!(update_flags(page, PageTableFlags::NO_EXECUTE).is_ok());
            let flags = translate(page.start_address()).map(|(_, f)| f).unwrap_or(PageTableFlags::empty());
            check!(!flags.contains(PageTableFlags::WRITABLE));
            check_eq!(unmap(page), Ok(frame));
            check_eq!(translate(page.start_address()), None);
            check_eq!(unmap(page), Err(MapError::NotMapped(page.start_address())));
            // The page is gone: reading it faults, and the fault is recovered and reported.
            let fault = crate::arch::probe_read_u64(page.start_address().as_u64());
            check_eq!(fault.map_err(|f| f.addr), Err(page.start_address().as_u64()));
            check!(free_frame(frame).is_ok());
            Ok(())
        }

        fn published_code_is_executable_and_never_writable() -> TestResult {
            // mov eax, 42; ret
            let code = publish_code(&[0xB8, 42, 0, 0, 0, 0xC3]).expect("publish");
            let (_, flags) = translate(code.base()).expect("mapped");
            check!(!flags.contains(PageTableFlags::WRITABLE), "code page is writable: {flags:?}");
            check!(!flags.contains(PageTableFlags::NO_EXECUTE), "code page is not executable: {flags:?}");
            // SAFETY: the bytes are a complete function returning 42 under the C ABI.
            let f: extern "C" fn() -> u32 = unsafe { core::mem::transmute(code.base().as_u64()) };
            check_eq!(f(), 42);
            let frames_before = frame_stats().allocated;
            let base = code.base();
            drop(code);
            check_eq!(translate(base), None);
            check_eq!(frame_stats().allocated, frames_before - 1);
            Ok(())
        }

        fn heap_small_and_large_allocations() -> TestResult {
            let small: Vec<alloc::boxed::Box<u64>> = (0..1000).map(alloc::boxed::Box::new).collect();
            check!(small.iter().enumerate().all(|(i, b)| **b == i as u64));
            let before = heap_stats().mapped;
            // Four times the initial heap: only fits if the heap grows by mapping frames.
            let len = (4 * INITIAL_HEAP) as usize;
            let mut big: Vec<u8> = Vec::with_capacity(len);
            big.resize(len, 0xA5);
            big[len - 1] = 7;
            check!(big[..len - 1].iter().all(|&b| b == 0xA5));
            check_eq!(big[len - 1], 7);
            check!(heap_stats().mapped >= before + 4 * INITIAL_HEAP, "heap did not grow: {} -> {}", before, heap_stats().mapped);
            drop(big);
            drop(small);
            Ok(())
        }
    }
}
