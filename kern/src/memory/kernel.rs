//! The kernel's memory: the frame allocator over the boot memory map, page-table management over
//! the bootloader's mapping of all physical memory, virtual-address windows, and the heap.
use core::alloc::{GlobalAlloc, Layout};
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use ::x86_64::structures::paging::PhysFrame;
use ::x86_64::{PhysAddr, VirtAddr};
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use buddy_system_allocator::{Heap, LockedHeapWithRescue};
use spin::{Mutex, Once};

use super::frame::{FrameAllocator, FrameError, FrameLinks, FrameStats};
use super::{PAGE_SIZE, grow};
use crate::arch;
pub use crate::arch::paging::{MapError, PageInfo, Rights};
use crate::arch::paging::{self, FrameSource, Root};

/// The virtual address at which physical address `phys` is mapped (the physical window).
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    paging::phys_to_virt(phys)
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

/// The frame allocator as page-table code sees it (frames for intermediate tables).
struct KernelFrames;

impl FrameSource for KernelFrames {
    fn alloc(&self) -> Option<PhysFrame> {
        alloc_frame()
    }
    fn free(&self, frame: PhysFrame) {
        if let Err(e) = free_frame(frame) {
            log::error!("page-table frame: {e}");
        }
    }
}

static KERNEL_FRAMES: KernelFrames = KernelFrames;

/// Maps the kernel page at `va` to `frame` with `rights`.
pub fn map(va: VirtAddr, frame: PhysFrame, rights: Rights) -> Result<(), MapError> {
    paging::map(kernel_root(), va, frame, rights)
}

/// Unmaps the kernel page at `va` and returns the frame it was mapped to (the caller decides
/// whether to free it).
pub fn unmap(va: VirtAddr) -> Result<PhysFrame, MapError> {
    paging::unmap(kernel_root(), va)
}

/// Changes the rights of a mapped kernel page.
pub fn protect(va: VirtAddr, rights: Rights) -> Result<(), MapError> {
    paging::protect(kernel_root(), va, rights)
}

/// What the kernel address `addr` is mapped to, if anything.
pub fn query(addr: VirtAddr) -> Option<PageInfo> {
    paging::query(kernel_root(), addr)
}

/// Maps fresh, zeroed frames over `[start, start + len)`.
pub fn map_fresh(start: VirtAddr, len: u64, rights: Rights) -> Result<(), MapError> {
    let first = start.align_down(PAGE_SIZE).as_u64();
    let pages = (start.as_u64() - first + len.max(1)).div_ceil(PAGE_SIZE);
    for i in 0..pages {
        let va = VirtAddr::new(first + i * PAGE_SIZE);
        let mapped = alloc_frame().ok_or(MapError::OutOfFrames).and_then(|frame| {
            // SAFETY: the frame is fresh from the allocator and reached through the physical map.
            unsafe { core::ptr::write_bytes(phys_to_virt(frame.start_address()).as_mut_ptr::<u8>(), 0, PAGE_SIZE as usize) };
            map(va, frame, rights).inspect_err(|_| {
                let _ = free_frame(frame);
            })
        });
        if let Err(e) = mapped {
            // Give back what this call mapped: a failure (out of memory) loses no frames.
            for j in 0..i {
                if let Ok(frame) = unmap(VirtAddr::new(first + j * PAGE_SIZE)) {
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
    let root = Root::active();
    let slot = (256..512).find(|&i| root.slot_unused(i) && !taken[i])?;
    taken[slot] = true;
    // Sign-extend bit 47 for the canonical higher-half address.
    Some(VirtAddr::new(0xFFFF_0000_0000_0000 | ((slot as u64) << 39)))
}

static MMIO: Mutex<Window> = Mutex::new(Window { next: 0, end: 0 });
/// Graft code and kernel stacks: recycled, so that the page tables under the window stay as
/// large as the most code and stacks ever live at once, not as all ever made.
static CODE: Mutex<RecyclingWindow> = Mutex::new(RecyclingWindow::new());

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
            match unmap(self.base + i * PAGE_SIZE) {
                Ok(frame) => {
                    if let Err(e) = free_frame(frame) {
                        log::error!("freeing code frame: {e}");
                    }
                }
                Err(e) => log::error!("unmapping code: {e}"),
            }
        }
        let (base, pages) = (self.base.as_u64(), self.pages);
        arch::without_interrupts(|| CODE.lock().release(base, pages));
    }
}

/// Maps a kernel stack of `len` bytes (rounded up to pages) with an unmapped guard page below
/// it, so an overflow faults instead of corrupting memory. Returns (lowest address, top).
/// The stack lives as long as the kernel.
pub fn map_stack(len: u64) -> Result<(u64, u64), MapError> {
    let pages = len.div_ceil(PAGE_SIZE);
    // A guard page below the stack (the window's next page) and one after it.
    let base = arch::without_interrupts(|| CODE.lock().reserve(pages + 1)).ok_or(MapError::OutOfFrames)?;
    let bottom = base + PAGE_SIZE;
    if let Err(e) = map_fresh(VirtAddr::new(bottom), pages * PAGE_SIZE, Rights::KERNEL_DATA) {
        arch::without_interrupts(|| CODE.lock().release(base, pages + 1));
        return Err(e);
    }
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
            if let Ok(frame) = unmap(VirtAddr::new(va)) {
                let _ = free_frame(frame);
            }
            va += PAGE_SIZE;
        }
        // `map_stack` reserved the guard page below the stack, the stack, and the one above.
        let pages = (self.top - self.bottom) / PAGE_SIZE + 1;
        let base = self.bottom - PAGE_SIZE;
        arch::without_interrupts(|| CODE.lock().release(base, pages));
    }
}

/// Copies `code` into fresh pages of the code window, then makes them read-only and
/// executable.
pub fn publish_code(code: &[u8]) -> Result<ExecCode, MapError> {
    let pages = (code.len().max(1) as u64).div_ceil(PAGE_SIZE);
    // One unmapped guard page between consecutive code blobs.
    let base = VirtAddr::new(arch::without_interrupts(|| CODE.lock().reserve(pages)).ok_or(MapError::OutOfFrames)?);
    if let Err(e) = map_fresh(base, pages * PAGE_SIZE, Rights::KERNEL_DATA) {
        arch::without_interrupts(|| CODE.lock().release(base.as_u64(), pages));
        return Err(e);
    }
    // SAFETY: the range was just mapped writable for us alone.
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), base.as_mut_ptr::<u8>(), code.len()) };
    let exec = ExecCode { base, len: code.len(), pages };
    for i in 0..pages {
        protect(base + i * PAGE_SIZE, Rights::KERNEL_CODE)?;
    }
    Ok(exec)
}

/// Maps device memory (uncached) and returns its virtual address.
pub fn map_mmio(phys: PhysAddr, len: u64) -> Result<VirtAddr, MapError> {
    let offset = phys.as_u64() % PAGE_SIZE;
    let pages = (offset + len).div_ceil(PAGE_SIZE);
    let base = MMIO.lock().reserve(pages, 0)?;
    for i in 0..pages {
        let frame = PhysFrame::containing_address(phys + i * PAGE_SIZE);
        map(VirtAddr::new(base + i * PAGE_SIZE), frame, Rights::DEVICE)?;
    }
    Ok(VirtAddr::new(base + offset))
}

/// Pages set aside at boot for device memory (DMA): 2 MiB.
const DMA_POOL_PAGES: usize = 512;

/// The DMA pool: its first frame and the bookkeeping of its pages.
static DMA: Mutex<(u64, super::dma::RunAllocator<{ DMA_POOL_PAGES / 64 }>)> =
    Mutex::new((0, super::dma::RunAllocator::new(0)));

/// Physically contiguous memory a device reads or writes, reached by the kernel through the
/// physical window. Given back to the pool when dropped.
pub struct DmaBuffer {
    phys: PhysAddr,
    pages: usize,
}

impl DmaBuffer {
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// The kernel's address of the first byte.
    pub fn virt(&self) -> VirtAddr {
        phys_to_virt(self.phys)
    }

    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE as usize
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// Gives up ownership: the pages stay allocated until `dma_free_raw` (for drivers whose
    /// library frees by physical address).
    pub fn leak(self) -> (PhysAddr, usize) {
        let r = (self.phys, self.pages);
        core::mem::forget(self);
        r
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        dma_free_raw(self.phys, self.pages);
    }
}

/// `pages` zeroed, physically contiguous pages for a device; `None` when the pool has no such run.
pub fn dma_alloc(pages: usize) -> Option<DmaBuffer> {
    let phys = arch::without_interrupts(|| {
        let mut pool = DMA.lock();
        let first = pool.1.alloc(pages)?;
        Some(PhysAddr::new(pool.0 + first as u64 * PAGE_SIZE))
    })?;
    // SAFETY: the run was just handed out to us alone and is reached through the physical window.
    unsafe { core::ptr::write_bytes(phys_to_virt(phys).as_mut_ptr::<u8>(), 0, pages * PAGE_SIZE as usize) };
    Some(DmaBuffer { phys, pages })
}

/// Gives back `pages` pages at `phys` that `dma_alloc` handed out; anything else is refused
/// (logged), never corrupting the pool.
pub fn dma_free_raw(phys: PhysAddr, pages: usize) {
    let ok = arch::without_interrupts(|| {
        let mut pool = DMA.lock();
        let Some(off) = phys.as_u64().checked_sub(pool.0) else { return false };
        off % PAGE_SIZE == 0 && pool.1.free((off / PAGE_SIZE) as usize, pages)
    });
    if !ok {
        log::error!("DMA free of {pages} pages at {:#x}: not a run the pool handed out", phys.as_u64());
    }
}

/// Whether `phys` lies in the DMA pool.
pub fn dma_pool_contains(phys: PhysAddr) -> bool {
    let base = arch::without_interrupts(|| DMA.lock().0);
    (base..base + DMA_POOL_PAGES as u64 * PAGE_SIZE).contains(&phys.as_u64()) && base != 0
}

/// Size of the heap mapped at boot; it grows on demand beyond that.
const INITIAL_HEAP: u64 = 1024 * 1024;

static HEAP_TOP: Mutex<(u64, u64)> = Mutex::new((0, 0)); // (current end, window end)

/// The global allocator: the buddy allocator, with interrupts held off while its lock is taken
/// (an interrupt handler, or a thread switched to from one, must never spin on a lock held by the
/// code it interrupted). It also keeps the counters `kstat` reports (live bytes, their high-water
/// mark, failures) and injects failures for the fault-injection tests (`failalloc`).
pub struct KernelHeap(LockedHeapWithRescue<32>);

/// Allocation counters and fault injection, kept by the global allocator with atomics only (it
/// must not allocate or take locks of its own).
struct AllocCounters {
    /// Bytes requested by live allocations.
    live: AtomicUsize,
    /// Highest `live` since `reset_peak`.
    peak: AtomicUsize,
    /// Requests the heap could not satisfy (injected ones not counted).
    failed: AtomicU64,
    /// Nesting of system-call paths in progress (`on_syscall_path`).
    syscall: AtomicU32,
    /// Nesting of admitted sections (`admitted`): allocations there are not injected.
    admitted: AtomicU32,
    /// Allocations seen on system-call paths since the counter was armed.
    seen: AtomicU64,
    /// The allocation number (counted from 1 by `seen`) that fails; 0: none.
    fail_at: AtomicU64,
    /// Failures injected so far.
    injected: AtomicU64,
}

static COUNTERS: AllocCounters = AllocCounters {
    live: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
    failed: AtomicU64::new(0),
    syscall: AtomicU32::new(0),
    admitted: AtomicU32::new(0),
    seen: AtomicU64::new(0),
    fail_at: AtomicU64::new(0),
    injected: AtomicU64::new(0),
};

impl AllocCounters {
    /// Whether this allocation is the one fault injection makes fail.
    #[inline]
    fn inject(&self) -> bool {
        if self.fail_at.load(Ordering::Relaxed) == 0
            || self.syscall.load(Ordering::Relaxed) == 0
            || self.admitted.load(Ordering::Relaxed) != 0
        {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_at.compare_exchange(n, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Allocations of at least this many bytes get pages of their own in the large-allocation
/// window, given back to the frame allocator when freed: the heap, which never shrinks, would
/// otherwise keep every frame a burst of large allocations (graft data regions) made it map,
/// and user memory would be refused after the burst was over.
const LARGE_ALLOCATION: usize = 64 * 1024;

/// The large-allocation window: handed out front to back like `Window`, but address ranges
/// that are given back are handed out again (first fit, neighbours merged), so that the page
/// tables under the window stop growing once they cover the largest set of live allocations.
struct RecyclingWindow {
    next: u64,
    end: u64,
    /// Free (first address, pages) runs; a run that does not fit is forgotten (its addresses
    /// are lost, not its frames).
    free: [(u64, u64); 128],
    free_len: usize,
}

impl RecyclingWindow {
    const fn new() -> RecyclingWindow {
        RecyclingWindow { next: 0, end: 0, free: [(0, 0); 128], free_len: 0 }
    }

    /// `pages` pages followed by one unmapped guard page; the first address.
    fn reserve(&mut self, pages: u64) -> Option<u64> {
        let need = pages.checked_add(1)?;
        if let Some(i) = self.free[..self.free_len].iter().position(|&(_, n)| n >= need) {
            let (base, n) = self.free[i];
            if n == need {
                self.free_len -= 1;
                self.free[i] = self.free[self.free_len];
            } else {
                self.free[i] = (base + need * PAGE_SIZE, n - need);
            }
            return Some(base);
        }
        let base = self.next;
        let end = base.checked_add(need.checked_mul(PAGE_SIZE)?)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(base)
    }

    /// Gives back what `reserve(pages)` returned at `base`.
    fn release(&mut self, base: u64, pages: u64) {
        let (mut base, mut n) = (base, pages + 1);
        // Merge with runs that touch it.
        let mut i = 0;
        while i < self.free_len {
            let (b, m) = self.free[i];
            if b + m * PAGE_SIZE == base || base + n * PAGE_SIZE == b {
                base = base.min(b);
                n += m;
                self.free_len -= 1;
                self.free[i] = self.free[self.free_len];
            } else {
                i += 1;
            }
        }
        if base + n * PAGE_SIZE == self.next {
            self.next = base;
        } else if self.free_len < self.free.len() {
            self.free[self.free_len] = (base, n);
            self.free_len += 1;
        }
    }
}

static LARGE: Mutex<RecyclingWindow> = Mutex::new(RecyclingWindow::new());
static LARGE_BASE: AtomicU64 = AtomicU64::new(0);

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE_ALLOCATION && layout.align() as u64 <= PAGE_SIZE && LARGE_BASE.load(Ordering::Relaxed) != 0
}

/// Fresh zeroed pages for a large allocation (with an unmapped guard page after them).
fn large_alloc(size: usize) -> *mut u8 {
    let pages = (size as u64).div_ceil(PAGE_SIZE);
    let Some(base) = arch::without_interrupts(|| LARGE.lock().reserve(pages)) else {
        return core::ptr::null_mut();
    };
    match map_fresh(VirtAddr::new(base), pages * PAGE_SIZE, Rights::KERNEL_DATA) {
        Ok(()) => base as *mut u8,
        Err(_) => {
            arch::without_interrupts(|| LARGE.lock().release(base, pages));
            core::ptr::null_mut()
        }
    }
}

fn large_free(ptr: *mut u8, size: usize) {
    let pages = (size as u64).div_ceil(PAGE_SIZE);
    for i in 0..pages {
        if let Ok(frame) = unmap(VirtAddr::new(ptr as u64 + i * PAGE_SIZE)) {
            let _ = free_frame(frame);
        }
    }
    arch::without_interrupts(|| LARGE.lock().release(ptr as u64, pages));
}

// SAFETY: forwards to the buddy allocator, which upholds GlobalAlloc's contract, or hands out
// whole fresh pages of the large-allocation window (page-aligned, so any alignment up to a
// page holds); an injected failure returns null, which the contract allows.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTERS.inject() {
            return core::ptr::null_mut();
        }
        let p = if is_large(&layout) {
            large_alloc(layout.size())
        } else {
            // SAFETY: forwarded from the caller.
            arch::without_interrupts(|| unsafe { self.0.alloc(layout) })
        };
        if p.is_null() {
            COUNTERS.failed.fetch_add(1, Ordering::Relaxed);
        } else {
            let live = COUNTERS.live.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            COUNTERS.peak.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        COUNTERS.live.fetch_sub(layout.size(), Ordering::Relaxed);
        let base = LARGE_BASE.load(Ordering::Relaxed);
        if base != 0 && (base..base + (1 << 39)).contains(&(ptr as u64)) {
            large_free(ptr, layout.size());
            return;
        }
        // SAFETY: forwarded from the caller.
        arch::without_interrupts(|| unsafe { self.0.dealloc(ptr, layout) })
    }
}

/// Runs `f`, a system call, as a system-call path: fault injection counts its allocations.
pub fn on_syscall_path<R>(f: impl FnOnce() -> R) -> R {
    COUNTERS.syscall.fetch_add(1, Ordering::Relaxed);
    let r = f();
    COUNTERS.syscall.fetch_sub(1, Ordering::Relaxed);
    r
}

/// Runs `f`, whose allocations were admitted up front (charged to a process and checked against
/// the kernel's free memory before it started, e.g. compiling a graft with Cranelift, which
/// cannot report a failed allocation): fault injection skips it.
pub fn admitted<R>(f: impl FnOnce() -> R) -> R {
    COUNTERS.admitted.fetch_add(1, Ordering::Relaxed);
    let r = f();
    COUNTERS.admitted.fetch_sub(1, Ordering::Relaxed);
    r
}

/// Runs `f`, a part of a system-call path whose allocations are not yet all fallible (they would
/// end the kernel if they failed): fault injection skips it, so that the sweep tests the rest.
/// Each use names what is missing; `docs/robustness.md` lists them.
pub fn not_yet_fallible<R>(f: impl FnOnce() -> R) -> R {
    admitted(f)
}

/// Makes the `n`th allocation on a system-call path from now on fail (0: none); restarts the
/// count.
pub fn arm_fail_alloc(n: u64) {
    COUNTERS.fail_at.store(0, Ordering::Relaxed);
    COUNTERS.seen.store(0, Ordering::Relaxed);
    COUNTERS.fail_at.store(n, Ordering::Relaxed);
}

/// Fault injection's state: (allocations seen on system-call paths since armed, still armed,
/// failures injected in all).
pub fn fail_alloc_state() -> (u64, bool, u64) {
    (
        COUNTERS.seen.load(Ordering::Relaxed),
        COUNTERS.fail_at.load(Ordering::Relaxed) != 0,
        COUNTERS.injected.load(Ordering::Relaxed),
    )
}

/// Bytes the kernel could still hand out: free frames, and the heap's mapped but unused bytes.
pub fn free_bytes() -> u64 {
    let h = heap_stats();
    frame_stats().free() * PAGE_SIZE + h.mapped.saturating_sub(h.allocated as u64)
}

/// Resets the heap's high-water mark to the bytes live now (to measure one operation's peak).
pub fn reset_heap_peak() {
    COUNTERS.peak.store(COUNTERS.live.load(Ordering::Relaxed), Ordering::Relaxed);
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
    if let Err(e) = map_fresh(VirtAddr::new(cur), new_top - cur, Rights::KERNEL_DATA) {
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
    /// Bytes handed out to live allocations (rounded up to the buddy allocator's blocks).
    pub allocated: usize,
    /// Bytes requested by live allocations.
    pub requested: usize,
    /// Highest `requested` since `reset_heap_peak`.
    pub peak: usize,
    /// Requests the heap could not satisfy (injected failures not counted).
    pub failed: u64,
}

pub fn heap_stats() -> HeapStats {
    let mapped = {
        let (cur, _) = *HEAP_TOP.lock();
        cur - HEAP_BASE.get().copied().unwrap_or(cur)
    };
    let allocated = arch::without_interrupts(|| HEAP.0.lock().stats_alloc_actual());
    HeapStats {
        mapped,
        allocated,
        requested: COUNTERS.live.load(Ordering::Relaxed),
        peak: COUNTERS.peak.load(Ordering::Relaxed),
        failed: COUNTERS.failed.load(Ordering::Relaxed),
    }
}

static HEAP_BASE: Once<u64> = Once::new();

/// The kernel's own level-4 table (the one the bootloader made), whose higher half every user
/// address space shares.
static KERNEL_ROOT: Once<Root> = Once::new();

pub fn kernel_root() -> Root {
    *KERNEL_ROOT.get().expect("memory::init has run")
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
    paging::init(offset, &KERNEL_FRAMES);
    KERNEL_ROOT.call_once(Root::active);
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
    // Device memory first, while the regions are untouched and contiguous.
    match FRAMES.lock().alloc_contiguous(DMA_POOL_PAGES as u64) {
        Some(first) => *DMA.lock() = (first, super::dma::RunAllocator::new(DMA_POOL_PAGES)),
        None => log::warn!("no contiguous memory for the DMA pool: devices cannot be used"),
    }

    let mut taken = [false; 512];
    let heap = reserve_l4_slot(&mut taken).ok_or(InitError::NoFreeAddressSpace)?;
    let mmio = reserve_l4_slot(&mut taken).ok_or(InitError::NoFreeAddressSpace)?;
    *MMIO.lock() = Window { next: mmio.as_u64(), end: mmio.as_u64() + (1 << 39) };
    let code = reserve_l4_slot(&mut taken).ok_or(InitError::NoFreeAddressSpace)?;
    {
        let mut w = CODE.lock();
        w.next = code.as_u64();
        w.end = code.as_u64() + (1 << 39);
    }
    let large = reserve_l4_slot(&mut taken).ok_or(InitError::NoFreeAddressSpace)?;
    {
        let mut w = LARGE.lock();
        w.next = large.as_u64();
        w.end = large.as_u64() + (1 << 39);
    }
    // User address spaces copy the kernel's level-4 entries when they are made: create the
    // tables under every window now, so that later mappings there are seen by all spaces.
    for window in [mmio, code, large] {
        map_fresh(window, PAGE_SIZE, Rights::KERNEL_DATA).map_err(InitError::Map)?;
        let frame = unmap(window).map_err(InitError::Map)?;
        let _ = free_frame(frame);
    }

    let base = heap.as_u64();
    map_fresh(heap, INITIAL_HEAP, Rights::KERNEL_DATA).map_err(InitError::Map)?;
    HEAP_BASE.call_once(|| base);
    LARGE_BASE.store(large.as_u64(), Ordering::Relaxed);
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

    /// Test-and-clear of the accessed and dirty bits of a kernel page.
    fn paging_bits(va: VirtAddr) -> (Option<bool>, Option<bool>) {
        let root = kernel_root();
        (crate::arch::paging::take_accessed(root, va), crate::arch::paging::take_dirty(root, va))
    }

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
            let va = VirtAddr::new(base + (1 << 30));
            let frame = alloc_frame().expect("a free frame");
            check!(map(va, frame, Rights::KERNEL_DATA).is_ok());
            check_eq!(map(va, frame, Rights::KERNEL_DATA), Err(MapError::AlreadyMapped(va)));
            let ptr = va.as_mut_ptr::<u64>();
            // SAFETY: the page was just mapped writable and nothing else uses it.
            unsafe { ptr.write_volatile(0x1234_5678_9abc_def0) };
            // Read back through the physical window: the write reached the frame we mapped.
            // SAFETY: the frame is ours and mapped through the physical window.
            let via_phys = unsafe { phys_to_virt(frame.start_address()).as_ptr::<u64>().read_volatile() };
            check_eq!(via_phys, 0x1234_5678_9abc_def0);
            let info = query(va);
            check_eq!(info.map(|i| i.phys), Some(frame.start_address()));
            check!(info.is_some_and(|i| i.accessed && i.dirty), "the write set neither accessed nor dirty: {info:?}");
            check_eq!(paging_bits(va), (Some(true), Some(true)));
            check_eq!(paging_bits(va), (Some(false), Some(false)));
            // SAFETY: still mapped writable and ours.
            check_eq!(unsafe { ptr.read_volatile() }, 0x1234_5678_9abc_def0);
            check_eq!(paging_bits(va), (Some(true), Some(false)));
            check!(protect(va, Rights { write: false, ..Rights::KERNEL_DATA }).is_ok());
            check!(query(va).is_some_and(|i| !i.rights.write && !i.rights.exec));
            check_eq!(unmap(va), Ok(frame));
            check_eq!(query(va), None);
            check_eq!(paging_bits(va), (None, None));
            check_eq!(unmap(va), Err(MapError::NotMapped(va)));
            // The page is gone: reading it faults, and the fault is recovered and reported.
            let fault = crate::arch::probe_read_u64(va.as_u64());
            check_eq!(fault.map_err(|f| f.addr), Err(va.as_u64()));
            check!(free_frame(frame).is_ok());
            Ok(())
        }

        fn published_code_is_executable_and_never_writable() -> TestResult {
            // mov eax, 42; ret
            let code = publish_code(&[0xB8, 42, 0, 0, 0, 0xC3]).expect("publish");
            let rights = query(code.base()).expect("mapped").rights;
            check!(!rights.write, "code page is writable: {rights:?}");
            check!(rights.exec, "code page is not executable: {rights:?}");
            // SAFETY: the bytes are a complete function returning 42 under the C ABI.
            let f: extern "C" fn() -> u32 = unsafe { core::mem::transmute(code.base().as_u64()) };
            check_eq!(f(), 42);
            let frames_before = frame_stats().allocated;
            let base = code.base();
            drop(code);
            check_eq!(query(base), None);
            check_eq!(frame_stats().allocated, frames_before - 1);
            Ok(())
        }

        fn heap_small_and_large_allocations() -> TestResult {
            let small: Vec<alloc::boxed::Box<u64>> = (0..1000).map(alloc::boxed::Box::new).collect();
            check!(small.iter().enumerate().all(|(i, b)| **b == i as u64));
            let before = heap_stats().mapped;
            // Four times the initial heap in blocks below the large-allocation size: only fits if
            // the heap grows by mapping frames.
            let blocks: Vec<Vec<u8>> = (0..4 * INITIAL_HEAP as usize / (LARGE_ALLOCATION / 2))
                .map(|i| alloc::vec![i as u8; LARGE_ALLOCATION / 2 - 64])
                .collect();
            check!(blocks.iter().enumerate().all(|(i, b)| b.iter().all(|&x| x == i as u8)));
            // (Earlier tests may have grown it already: it holds at least what is live.)
            check!(heap_stats().mapped >= 4 * INITIAL_HEAP, "heap did not grow: {} -> {}", before, heap_stats().mapped);
            drop(blocks);
            // A large allocation has pages of its own, which go back to the frame allocator.
            let frames = frame_stats().allocated;
            let len = (4 * INITIAL_HEAP) as usize;
            let mut big: Vec<u8> = Vec::with_capacity(len);
            big.resize(len, 0xA5);
            big[len - 1] = 7;
            check!(big[..len - 1].iter().all(|&b| b == 0xA5));
            check_eq!(big[len - 1], 7);
            check!(frame_stats().allocated >= frames + len as u64 / PAGE_SIZE);
            drop(big);
            check!(frame_stats().allocated <= frames + 8, "the large allocation's frames were not given back");
            drop(small);
            Ok(())
        }
    }
}
