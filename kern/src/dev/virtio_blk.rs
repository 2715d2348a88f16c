//! virtio-blk disks over PCI, driven by the `virtio-drivers` crate.
//!
//! The crate reaches the platform through two traits we implement here: `Hal` (DMA memory
//! from the kernel's pool, buffers shared with the device directly when physically contiguous,
//! through a bounce buffer otherwise) and `ConfigurationAccess` (PCI configuration space over
//! the legacy ports, which is all QEMU's `pc` machine has). Completion is interrupt-driven: the
//! disk's legacy INTx line is routed by the I/O APIC (MSI-X would need the crate to program
//! the queue's MSI-X vector, which it does not); the handler collects finished requests and
//! wakes the threads waiting for them. Several requests are in flight at once, one per
//! descriptor chain of the virtqueue.
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;

use spin::Mutex;
use storage::block::{BlockDevice, Completion, DeviceError, Operation, RequestToken, SECTOR_SIZE};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::DeviceType;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};
use x86_64::{PhysAddr, VirtAddr};

use crate::arch::{self, pci};
use crate::memory;
use crate::task::WaitQueue;

/// The platform as `virtio-drivers` sees it.
pub struct KernelHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned, physically contiguous memory from the DMA pool that nothing else uses until `dma_dealloc`; `mmio_phys_to_virt` maps the BAR uncached in the kernel's MMIO window; `share` returns an address the device may use for exactly the buffer (or a private bounce copy of it), and `unshare` copies a bounce buffer back and frees it.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (virtio_drivers::PhysAddr, NonNull<u8>) {
        match memory::dma_alloc(pages) {
            Some(buf) => {
                let (phys, _) = buf.leak();
                let virt = memory::phys_to_virt(phys).as_mut_ptr::<u8>();
                (phys.as_u64(), NonNull::new(virt).unwrap_or(NonNull::dangling()))
            }
            // The crate has no way to report this: a zero address makes its queue set-up fail
            // on the device side (the device refuses queue address 0), never a kernel panic.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: virtio_drivers::PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        if paddr != 0 {
            memory::dma_free_raw(PhysAddr::new(paddr), pages);
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: virtio_drivers::PhysAddr, size: usize) -> NonNull<u8> {
        match memory::map_mmio(PhysAddr::new(paddr), size as u64) {
            Ok(v) => NonNull::new(v.as_mut_ptr::<u8>()).unwrap_or(NonNull::dangling()),
            Err(e) => {
                log::error!("virtio: cannot map BAR at {paddr:#x}: {e}");
                NonNull::dangling()
            }
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> virtio_drivers::PhysAddr {
        let virt = VirtAddr::from_ptr(buffer.as_ptr().cast::<u8>());
        let len = buffer.len();
        if let Some(phys) = contiguous_phys(virt, len) {
            return phys.as_u64();
        }
        // Not contiguous in physical memory: the device works on a private copy.
        let Some(bounce) = memory::dma_alloc(len.div_ceil(PAGE_SIZE)) else {
            log::error!("virtio: no DMA memory for a bounce buffer of {len} bytes");
            return 0;
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid for `len` bytes; the bounce buffer is ours and at least as long.
            unsafe { core::ptr::copy_nonoverlapping(buffer.as_ptr().cast::<u8>(), bounce.virt().as_mut_ptr::<u8>(), len) };
        }
        bounce.leak().0.as_u64()
    }

    unsafe fn unshare(paddr: virtio_drivers::PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let phys = PhysAddr::new(paddr);
        if paddr == 0 || !memory::dma_pool_contains(phys) {
            return;
        }
        let len = buffer.len();
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the bounce buffer made by `share` holds `len` bytes the device wrote; the caller guarantees `buffer` is valid for them.
            unsafe { core::ptr::copy_nonoverlapping(memory::phys_to_virt(phys).as_ptr::<u8>(), buffer.as_ptr().cast::<u8>(), len) };
        }
        memory::dma_free_raw(phys, len.div_ceil(PAGE_SIZE));
    }
}

/// The physical address of `[virt, virt + len)` if it is mapped to one physical run.
fn contiguous_phys(virt: VirtAddr, len: usize) -> Option<PhysAddr> {
    let start = memory::query(virt)?.phys;
    let mut page = virt.align_down(PAGE_SIZE as u64);
    let end = virt + len as u64;
    while page < end {
        let expect = start + (page.as_u64().max(virt.as_u64()) - virt.as_u64());
        if memory::query(page.max(virt))?.phys != expect {
            return None;
        }
        page += PAGE_SIZE as u64;
    }
    Some(start)
}

/// PCI configuration space over the legacy ports.
struct PortCam;

impl ConfigurationAccess for PortCam {
    fn read_word(&self, f: DeviceFunction, offset: u8) -> u32 {
        pci::read32(pci::Function { bus: f.bus, device: f.device, function: f.function }, offset)
    }

    fn write_word(&mut self, f: DeviceFunction, offset: u8, data: u32) {
        pci::write32(pci::Function { bus: f.bus, device: f.device, function: f.function }, offset, data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// A request in flight: what the device reads and writes until it completes. The header and
/// status live in boxes, the data in the caller's vector: none of them moves while the device
/// holds their addresses.
struct InFlight {
    token: RequestToken,
    operation: Operation,
    sector: u64,
    req: Box<BlkReq>,
    resp: Box<BlkResp>,
    buffer: Vec<u8>,
}

/// One virtio-blk disk.
pub struct VirtioDisk {
    blk: VirtIOBlk<KernelHal, PciTransport>,
    /// By the virtqueue's descriptor token.
    in_flight: BTreeMap<u16, InFlight>,
    done: VecDeque<Completion>,
    next_token: u64,
    sectors: u64,
}

impl VirtioDisk {
    /// Moves every request the device finished to `done`; returns how many.
    fn reap(&mut self) -> usize {
        let mut n = 0;
        while let Some(id) = self.blk.peek_used() {
            let Some(mut f) = self.in_flight.remove(&id) else {
                log::error!("virtio-blk: completion for unknown descriptor {id}");
                break;
            };
            // SAFETY: `f` holds exactly the header, buffer and status passed when the device returned `id`.
            let r = unsafe {
                match f.operation {
                    Operation::Read => self.blk.complete_read_blocks(id, &f.req, &mut f.buffer, &mut f.resp),
                    Operation::Write => self.blk.complete_write_blocks(id, &f.req, &f.buffer, &mut f.resp),
                }
            };
            let result = r.map_err(|e| {
                log::warn!("virtio-blk: {:?} at sector {} failed: {e}", f.operation, f.sector);
                DeviceError::Failed { sector: f.sector }
            });
            self.done.push_back(Completion { token: f.token, operation: f.operation, sector: f.sector, buffer: f.buffer, result });
            n += 1;
        }
        n
    }

    fn submit(&mut self, operation: Operation, sector: u64, mut buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        let len = buffer.len();
        if len == 0 || len % SECTOR_SIZE != 0 {
            return Err(DeviceError::BadBuffer { len });
        }
        let sectors = (len / SECTOR_SIZE) as u64;
        if sector.checked_add(sectors).is_none_or(|end| end > self.sectors) {
            return Err(DeviceError::OutOfRange { sector, sectors });
        }
        let (Ok(mut req), Ok(mut resp)) = (memory::try_box(BlkReq::default()), memory::try_box(BlkResp::default())) else {
            return Err(DeviceError::QueueFull);
        };
        let block = usize::try_from(sector).map_err(|_| DeviceError::OutOfRange { sector, sectors })?;
        // SAFETY: the header, buffer and status are kept in `in_flight` (heap memory that does not move) and not touched until the device returns the token.
        let id = unsafe {
            match operation {
                Operation::Read => self.blk.read_blocks_nb(block, &mut req, &mut buffer, &mut resp),
                Operation::Write => self.blk.write_blocks_nb(block, &mut req, &buffer, &mut resp),
            }
        }
        .map_err(|_| DeviceError::QueueFull)?;
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        self.in_flight.insert(id, InFlight { token, operation, sector, req, resp, buffer });
        Ok(token)
    }
}

impl VirtioDisk {
    /// Whether a finished request is waiting to be collected (checking the device too).
    pub fn has_completions(&mut self) -> bool {
        if self.done.is_empty() {
            self.reap();
        }
        !self.done.is_empty()
    }
}

impl BlockDevice for VirtioDisk {
    fn sector_count(&self) -> u64 {
        self.sectors
    }

    fn submit_read(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        self.submit(Operation::Read, sector, buffer)
    }

    fn submit_write(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        self.submit(Operation::Write, sector, buffer)
    }

    fn poll_completion(&mut self) -> Option<Completion> {
        if self.done.is_empty() {
            self.reap();
        }
        self.done.pop_front()
    }
}

/// A disk the kernel found: its driver behind a lock (taken with interrupts off), the threads
/// waiting for its completions, and where it sits.
pub struct Disk {
    pub name: alloc::string::String,
    pub device: Mutex<VirtioDisk>,
    /// Woken by the interrupt handler whenever requests complete.
    pub completions: WaitQueue,
    line: Option<u8>,
}

impl Disk {
    /// Runs `f` on the driver with interrupts off (the interrupt handler takes the same lock).
    /// Not re-entrant: `f` must not call `with` on the same disk.
    pub fn with<R>(&self, f: impl FnOnce(&mut VirtioDisk) -> R) -> R {
        arch::without_interrupts(|| f(&mut self.device.lock()))
    }

    /// Reads `buffer.len()` bytes from `sector` and waits for them (the thread sleeps until the
    /// interrupt). For callers that have no cache in between: tests, probing.
    pub fn read_sync(&self, sector: u64, buffer: Vec<u8>) -> Result<Vec<u8>, DeviceError> {
        let token = self.with(|d| d.submit_read(sector, buffer))?;
        self.wait_for(token)
    }

    /// Writes `buffer` at `sector` and waits until the device has it.
    pub fn write_sync(&self, sector: u64, buffer: Vec<u8>) -> Result<(), DeviceError> {
        let token = self.with(|d| d.submit_write(sector, buffer))?;
        self.wait_for(token).map(|_| ())
    }

    /// Waits for request `token` and returns its buffer. Completions of other requests that
    /// arrive meanwhile stay queued for their owners.
    pub fn wait_for(&self, token: RequestToken) -> Result<Vec<u8>, DeviceError> {
        log::trace!("{}: waiting for {token}", self.name);
        let mut mine = None;
        self.completions.wait_until(|| {
            mine = self.with(|d| {
                if self.line.is_none() {
                    // No interrupt line: poll.
                    d.reap();
                }
                let at = d.done.iter().position(|c| c.token == token)?;
                d.done.remove(at)
            });
            mine.is_some()
        });
        match mine {
            Some(c) => c.result.map(|()| c.buffer),
            None => Err(DeviceError::Failed { sector: 0 }),
        }
    }

    pub fn sectors(&self) -> u64 {
        self.with(|d| d.sectors)
    }
}

static DISKS: Mutex<Vec<Arc<Disk>>> = Mutex::new(Vec::new());

/// The disks found at boot, in PCI order (`vda`, `vdb`, ...).
pub fn disks() -> Vec<Arc<Disk>> {
    arch::without_interrupts(|| DISKS.lock().clone())
}

/// Interrupts that found finished requests (tests check completion is interrupt-driven).
static COMPLETION_INTERRUPTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub fn completion_interrupts() -> u64 {
    COMPLETION_INTERRUPTS.load(core::sync::atomic::Ordering::Relaxed)
}

/// The interrupt handler of every line a disk uses: collect completions, wake waiters.
fn on_interrupt() {
    for disk in DISKS.lock().iter() {
        let finished = {
            let mut d = disk.device.lock();
            // Reading the ISR status acknowledges (and deasserts) the line.
            let _ = d.blk.ack_interrupt();
            d.reap()
        };
        log::trace!("{}: interrupt, {finished} finished", disk.name);
        if finished > 0 {
            COMPLETION_INTERRUPTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            disk.completions.wake_all();
        }
    }
}

/// Finds the virtio-blk functions on bus 0 and starts a driver for each.
pub fn probe() {
    let mut root = PciRoot::new(PortCam);
    let functions: Vec<_> = root.enumerate_bus(0).collect();
    for (function, info) in functions {
        if virtio_drivers::transport::pci::virtio_device_type(&info) != Some(DeviceType::Block) {
            continue;
        }
        let transport = match PciTransport::new::<KernelHal, _>(&mut root, function) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("virtio-blk at {function}: {e}");
                continue;
            }
        };
        let mut blk = match VirtIOBlk::<KernelHal, _>::new(transport) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("virtio-blk at {function}: {e}");
                continue;
            }
        };
        let sectors = blk.capacity();
        let line = pci::interrupt_line(pci::Function { bus: function.bus, device: function.device, function: function.function });
        blk.enable_interrupts();
        let n = arch::without_interrupts(|| DISKS.lock().len());
        let name = alloc::format!("vd{}", (b'a' + n as u8) as char);
        let routed = line.and_then(|l| match arch::add_device_interrupt(l, on_interrupt) {
            Ok(()) => Some(l),
            Err(e) => {
                log::warn!("{name}: interrupt line {l}: {e}; polling instead");
                None
            }
        });
        log::info!(
            "{name}: virtio-blk at {function}, {} MiB, {}",
            sectors * SECTOR_SIZE as u64 / (1024 * 1024),
            match routed {
                Some(l) => alloc::format!("interrupt line {l}"),
                None => alloc::string::String::from("polled"),
            }
        );
        let disk = Disk {
            name,
            device: Mutex::new(VirtioDisk { blk, in_flight: BTreeMap::new(), done: VecDeque::new(), next_token: 0, sectors }),
            completions: WaitQueue::new(),
            line: routed,
        };
        arch::without_interrupts(|| DISKS.lock().push(Arc::new(disk)));
    }
}

#[cfg(feature = "ktest")]
mod ktests {
    use alloc::vec;
    use alloc::vec::Vec;

    use storage::block::{BlockDevice, SECTOR_SIZE};
    use storage::pattern;

    use crate::{check, check_eq, ktest};

    /// Where on the scratch disk (the last disk of the test build) the test writes, and with
    /// what seed:
    /// `./run.sh test` checks these sectors of the image on the host afterwards.
    const SEED: u32 = 0x5EED;
    const FIRST: u64 = 64;
    const REQUESTS: u64 = 16;
    const SECTORS_PER_REQUEST: u64 = 4;

    fn fail(message: alloc::string::String) -> crate::ktest::TestFailure {
        crate::ktest::TestFailure { message, file: file!(), line: line!() }
    }

    ktest! {
        fn virtio_disk_writes_and_reads_back_with_requests_in_flight() -> TestResult {
            let disks = super::disks();
            let disk = disks.last().ok_or_else(|| fail("no virtio disk attached (./run.sh test attaches build/scratch.img last)".into()))?;
            check!(disk.sectors() >= FIRST + REQUESTS * SECTORS_PER_REQUEST, "scratch disk of {} sectors is too small", disk.sectors());
            let irqs_before = super::completion_interrupts();
            let len = (SECTORS_PER_REQUEST as usize) * SECTOR_SIZE;
            // Every write submitted before any is waited for: all in flight at once.
            let (tokens, in_flight) = disk.with(|d| {
                let mut tokens = Vec::new();
                for k in 0..REQUESTS {
                    let sector = FIRST + k * SECTORS_PER_REQUEST;
                    let mut buf = vec![0u8; len];
                    pattern::fill(SEED, sector, &mut buf);
                    tokens.push(d.submit_write(sector, buf));
                }
                (tokens, d.in_flight.len())
            });
            check_eq!(in_flight, REQUESTS as usize);
            for t in tokens {
                let t = t.map_err(|e| fail(alloc::format!("submit: {e}")))?;
                disk.wait_for(t).map_err(|e| fail(alloc::format!("write: {e}")))?;
            }
            // Read back, newest first, again all in flight together.
            let tokens: Vec<_> = disk.with(|d| {
                (0..REQUESTS).rev().map(|k| d.submit_read(FIRST + k * SECTORS_PER_REQUEST, vec![0u8; len])).collect()
            });
            for (i, t) in tokens.into_iter().enumerate() {
                let k = REQUESTS - 1 - i as u64;
                let t = t.map_err(|e| fail(alloc::format!("submit: {e}")))?;
                let data = disk.wait_for(t).map_err(|e| fail(alloc::format!("read: {e}")))?;
                let sector = FIRST + k * SECTORS_PER_REQUEST;
                check_eq!(pattern::first_mismatch(SEED, sector, &data), None);
            }
            check!(super::completion_interrupts() > irqs_before, "no completion arrived by interrupt");
            // Bad requests are errors, not panics.
            check!(disk.with(|d| d.submit_read(0, vec![0u8; 100])).is_err());
            let end = disk.sectors();
            check!(disk.with(|d| d.submit_read(end, vec![0u8; 512])).is_err());
            check!(disk.with(|d| d.submit_read(u64::MAX, vec![0u8; 512])).is_err());
            Ok(())
        }
    }
}
