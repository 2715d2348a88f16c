//! The buffer cache: a fixed pool of block-sized frames over one [`BlockDevice`].
//!
//! What it owns and promises:
//! 1. At most `capacity` frames, allocated once; a block is in at most one frame.
//! 2. Eviction takes the least recently used frame that is not pinned and not in flight; a dirty
//!    victim is written back first (a copy goes into the write request, so the frame is free at
//!    once).
//! 3. One request per block at a time: a reader of a block whose read is in flight waits for
//!    *that* request; a block with a write-back in flight is not read from disk (stale) nor
//!    written again (reordering) until the write completes.
//! 4. The cache never waits. Operations that need the disk return [`Access::Wait`] with the token
//!    to wait for; the caller releases its lock, sleeps until [`BlockCache::is_done`] (the
//!    interrupt path calls [`BlockCache::process_completions`] and wakes the token's sleepers), and
//!    retries. [`Waiter`] packages that loop; [`PollingWaiter`] is the host version.
//!
//! How the kernel drives it, with the cache behind a lock and a wait queue per token:
//!
//! ```ignore
//! loop {
//!     let mut cache = CACHE.lock();
//!     match cache.begin_read(block)? {
//!         Access::Ready => return Ok(cache.copy_out(block, offset, buf)?),
//!         Access::Wait(token) => {
//!             drop(cache);                   // never sleep holding the cache
//!             wait_queue.sleep_until(token); // the IRQ handler ran process_completions(wake)
//!         }
//!     }
//! }
//! ```
//! The kernel's implementation of [`crate::ext2::BlockAccess`] is that loop; [`CachedBlocks`]
//! is the same loop with a [`Waiter`] for callers that may simply poll.
//!
//! Statistics count each demand read once: a hit, or a miss (a read issued), or a wait for a
//! prefetch still in flight; every read that had to wait is also a blocking read.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::block::{BlockDevice, Completion, DeviceError, RequestToken, SECTOR_SIZE};

/// Why a cache operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// The block size is not a power-of-two multiple of the sector size, or capacity is zero.
    BadGeometry { block_size: usize, capacity: usize },
    /// The block lies past the end of the device.
    OutOfRange { block: u64 },
    /// Every frame is pinned: nothing can be evicted.
    AllPinned,
    /// The block is not resident (call `begin_read` / `begin_overwrite` first).
    NotResident { block: u64 },
    /// Offset and length reach past the block.
    BadRange { block: u64, offset: usize, len: usize },
    /// The device failed or refused a request for this block.
    Device { block: u64, error: DeviceError },
    /// A write-back of this block failed; its data may be lost.
    WriteBackFailed { block: u64, error: DeviceError },
    /// A waiter gave up (the device never completed the request).
    Stuck { token: RequestToken },
    /// The block is pinned and cannot be discarded.
    Pinned { block: u64 },
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadGeometry { block_size, capacity } => {
                write!(f, "bad cache geometry: block size {block_size}, capacity {capacity}")
            }
            Self::OutOfRange { block } => write!(f, "block {block} is past the end of the device"),
            Self::AllPinned => write!(f, "every cache frame is pinned"),
            Self::NotResident { block } => write!(f, "block {block} is not in the cache"),
            Self::BadRange { block, offset, len } => {
                write!(f, "{len} bytes at offset {offset} overrun block {block}")
            }
            Self::Device { block, error } => write!(f, "block {block}: {error}"),
            Self::WriteBackFailed { block, error } => {
                write!(f, "write-back of block {block} failed: {error}")
            }
            Self::Stuck { token } => write!(f, "request {token} never completed"),
            Self::Pinned { block } => write!(f, "block {block} is pinned"),
        }
    }
}

/// The answer of an operation that may need the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The block is resident and valid now (until the caller's lock is released).
    Ready,
    /// Wait for this request to complete, then call again.
    Wait(RequestToken),
}

/// Where a block is, for `fs.block_cached`-style queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    Absent,
    InFlight,
    Cached,
}

/// Counters since the cache was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Demand reads that found the block valid.
    pub hits: u64,
    /// Demand reads that issued a device read.
    pub misses: u64,
    /// Demand reads that had to wait for the disk (misses and waits on a prefetch in flight).
    pub blocking_reads: u64,
    /// Asynchronous reads issued by `prefetch`.
    pub async_reads: u64,
    /// Demand reads that found their block already fetched by a prefetch (counted in `hits` too).
    pub prefetch_hits: u64,
    /// Write-backs submitted (sync, flush and eviction).
    pub writebacks: u64,
    /// Valid frames reused for another block.
    pub evictions: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameState {
    Free,
    Reading(RequestToken),
    Valid,
}

struct Frame {
    block: u64,
    state: FrameState,
    /// Empty while a read is in flight (the buffer is with the device).
    data: Vec<u8>,
    dirty: bool,
    pins: u32,
    last_use: u64,
    /// Brought in by `prefetch` and not yet read on demand.
    prefetched: bool,
    /// Demand readers told to wait for this frame's read who have not come back yet; their
    /// return is not a second hit.
    waiting_readers: u32,
}

enum Pending {
    Read { frame: usize },
    Write { block: u64 },
}

/// The buffer cache over device `D`.
pub struct BlockCache<D: BlockDevice> {
    device: D,
    block_size: usize,
    sectors_per_block: u64,
    block_count: u64,
    frames: Vec<Frame>,
    /// Block -> frame, for frames Reading or Valid.
    index: BTreeMap<u64, usize>,
    /// Valid frames by last use (stamps are unique): eviction takes the first eligible one.
    lru: BTreeMap<u64, usize>,
    /// Frames holding no block.
    free: Vec<usize>,
    /// Requests in flight.
    pending: BTreeMap<RequestToken, Pending>,
    /// Blocks with a write-back in flight (at most one each).
    writes_in_flight: BTreeMap<u64, RequestToken>,
    /// The first write-back failure not yet reported by a sync.
    write_error: Option<CacheError>,
    /// Failed reads not yet reported to a reader (so that a retry fails instead of looping).
    read_errors: BTreeMap<u64, DeviceError>,
    clock: u64,
    stats: CacheStats,
}

impl<D: BlockDevice> BlockCache<D> {
    /// A cache of `capacity` blocks of `block_size` bytes (a power of two, at least one sector).
    pub fn new(device: D, block_size: usize, capacity: usize) -> Result<Self, CacheError> {
        if block_size < SECTOR_SIZE || !block_size.is_power_of_two() || capacity == 0 {
            return Err(CacheError::BadGeometry { block_size, capacity });
        }
        let sectors_per_block = (block_size / SECTOR_SIZE) as u64;
        let block_count = device.sector_count() / sectors_per_block;
        let frames = (0..capacity)
            .map(|_| Frame {
                block: 0,
                state: FrameState::Free,
                data: vec![0; block_size],
                dirty: false,
                pins: 0,
                last_use: 0,
                prefetched: false,
                waiting_readers: 0,
            })
            .collect();
        Ok(Self {
            device,
            block_size,
            sectors_per_block,
            block_count,
            frames,
            index: BTreeMap::new(),
            lru: BTreeMap::new(),
            free: (0..capacity).rev().collect(),
            pending: BTreeMap::new(),
            writes_in_flight: BTreeMap::new(),
            write_error: None,
            read_errors: BTreeMap::new(),
            clock: 0,
            stats: CacheStats::default(),
        })
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Device size in cache blocks.
    pub fn block_count(&self) -> u64 {
        self.block_count
    }

    pub fn capacity(&self) -> usize {
        self.frames.len()
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Gives the device back. Dirty blocks not yet synced are dropped: sync first.
    pub fn into_device(self) -> D {
        self.device
    }

    /// Whether `block` is resident and valid.
    pub fn is_cached(&self, block: u64) -> bool {
        self.residency(block) == Residency::Cached
    }

    pub fn residency(&self, block: u64) -> Residency {
        match self.index.get(&block).and_then(|&f| self.frames.get(f)) {
            Some(frame) if frame.state == FrameState::Valid => Residency::Cached,
            Some(_) => Residency::InFlight,
            None => Residency::Absent,
        }
    }

    pub fn is_dirty(&self, block: u64) -> bool {
        self.frame_of(block).is_some_and(|f| self.frames[f].dirty)
    }

    /// Whether request `token` has completed (or was never this cache's).
    pub fn is_done(&self, token: RequestToken) -> bool {
        !self.pending.contains_key(&token)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Number of dirty frames.
    pub fn dirty_count(&self) -> usize {
        self.frames.iter().filter(|f| f.dirty).count()
    }

    fn check_block(&self, block: u64) -> Result<(), CacheError> {
        if block < self.block_count { Ok(()) } else { Err(CacheError::OutOfRange { block }) }
    }

    fn frame_of(&self, block: u64) -> Option<usize> {
        self.index.get(&block).copied()
    }

    fn valid_frame(&self, block: u64) -> Result<usize, CacheError> {
        match self.frame_of(block) {
            Some(f) if self.frames[f].state == FrameState::Valid => Ok(f),
            _ => Err(CacheError::NotResident { block }),
        }
    }

    fn touch(&mut self, frame: usize) {
        self.lru.remove(&self.frames[frame].last_use);
        self.clock += 1;
        self.frames[frame].last_use = self.clock;
        if self.frames[frame].state == FrameState::Valid {
            self.lru.insert(self.clock, frame);
        }
    }

    /// Empties a frame and returns it to the free list.
    fn release_frame(&mut self, frame: usize) {
        self.clear_frame(frame);
        self.free.push(frame);
    }

    /// Empties a frame (the caller keeps it).
    fn clear_frame(&mut self, frame: usize) {
        let f = &mut self.frames[frame];
        if f.state != FrameState::Free {
            self.index.remove(&f.block);
        }
        self.lru.remove(&f.last_use);
        f.state = FrameState::Free;
        f.dirty = false;
        f.pins = 0;
        f.prefetched = false;
        f.waiting_readers = 0;
        if f.data.len() != self.block_size {
            f.data = vec![0; self.block_size];
        }
    }

    fn any_pending(&self) -> Option<RequestToken> {
        self.pending.keys().next().copied()
    }

    /// Collects every finished request from the device and applies it; `woken` is told each
    /// finished token (the kernel wakes that token's sleepers). Returns how many finished.
    pub fn process_completions(&mut self, mut woken: impl FnMut(RequestToken)) -> usize {
        let mut count = 0;
        while let Some(completion) = self.device.poll_completion() {
            let token = completion.token;
            self.complete(completion);
            woken(token);
            count += 1;
        }
        count
    }

    fn complete(&mut self, completion: Completion) {
        let Some(pending) = self.pending.remove(&completion.token) else { return };
        match pending {
            Pending::Read { frame } => {
                let Some(f) = self.frames.get_mut(frame) else { return };
                if f.state != FrameState::Reading(completion.token) {
                    return;
                }
                match completion.result {
                    Ok(()) if completion.buffer.len() == self.block_size => {
                        f.data = completion.buffer;
                        f.state = FrameState::Valid;
                        self.lru.insert(f.last_use, frame);
                        // An older failure of this block is no longer news.
                        self.read_errors.remove(&f.block);
                    }
                    result => {
                        // A failed read leaves nothing cached; the reader's retry gets the error.
                        let error = result.err().unwrap_or(DeviceError::BadBuffer { len: 0 });
                        self.read_errors.insert(f.block, error);
                        self.release_frame(frame);
                    }
                }
            }
            Pending::Write { block } => {
                if self.writes_in_flight.get(&block) == Some(&completion.token) {
                    self.writes_in_flight.remove(&block);
                }
                if let Err(error) = completion.result {
                    if let Some(f) = self.frame_of(block) {
                        self.frames[f].dirty = true;
                    }
                    self.write_error.get_or_insert(CacheError::WriteBackFailed { block, error });
                }
            }
        }
    }

    fn submit_write(&mut self, block: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        let token = self.device.submit_write(block * self.sectors_per_block, buffer)?;
        self.pending.insert(token, Pending::Write { block });
        self.writes_in_flight.insert(block, token);
        self.stats.writebacks += 1;
        Ok(token)
    }

    /// Finds a frame to hold a new block: a free one, else the LRU unpinned valid one (written
    /// back first if dirty).
    fn take_frame(&mut self) -> Result<Result<usize, RequestToken>, CacheError> {
        if let Some(free) = self.free.pop() {
            return Ok(Ok(free));
        }
        let victim = self.lru.values().copied().find(|&i| {
            let f = &self.frames[i];
            f.pins == 0 && !(f.dirty && self.writes_in_flight.contains_key(&f.block))
        });
        let Some(victim) = victim else {
            return match self.any_pending() {
                Some(token) => Ok(Err(token)),
                None => Err(CacheError::AllPinned),
            };
        };
        let block = self.frames[victim].block;
        if self.frames[victim].dirty {
            // A copy, not a move: a refused submission must not lose the data.
            let copy = self.frames[victim].data.clone();
            match self.submit_write(block, copy) {
                Ok(_) => {}
                Err(DeviceError::QueueFull) => {
                    return match self.any_pending() {
                        Some(token) => Ok(Err(token)),
                        None => Err(CacheError::Device { block, error: DeviceError::QueueFull }),
                    };
                }
                Err(error) => return Err(CacheError::Device { block, error }),
            }
        }
        self.clear_frame(victim);
        self.stats.evictions += 1;
        Ok(Ok(victim))
    }

    /// Starts a read of `block` into a free frame. `Ok(Err(token))`: no frame yet, wait for it.
    fn start_read(&mut self, block: u64) -> Result<Result<RequestToken, RequestToken>, CacheError> {
        let frame = match self.take_frame()? {
            Ok(frame) => frame,
            Err(token) => return Ok(Err(token)),
        };
        let buffer = core::mem::take(&mut self.frames[frame].data);
        let buffer = if buffer.len() == self.block_size { buffer } else { vec![0; self.block_size] };
        match self.device.submit_read(block * self.sectors_per_block, buffer) {
            Ok(token) => {
                let f = &mut self.frames[frame];
                f.block = block;
                f.state = FrameState::Reading(token);
                f.dirty = false;
                f.pins = 0;
                f.prefetched = false;
                f.waiting_readers = 0;
                self.index.insert(block, frame);
                self.pending.insert(token, Pending::Read { frame });
                self.touch(frame);
                Ok(Ok(token))
            }
            Err(error) => {
                self.frames[frame].data = vec![0; self.block_size];
                self.release_frame(frame);
                match (error, self.any_pending()) {
                    (DeviceError::QueueFull, Some(token)) => Ok(Err(token)),
                    _ => Err(CacheError::Device { block, error }),
                }
            }
        }
    }

    /// Makes `block` resident for a demand read. `Ready`: its data is valid now; `Wait(token)`:
    /// sleep until `token` is done, then call again (a block already in flight is never read
    /// twice).
    pub fn begin_read(&mut self, block: u64) -> Result<Access, CacheError> {
        self.check_block(block)?;
        if let Some(frame) = self.frame_of(block) {
            let f = &mut self.frames[frame];
            match f.state {
                FrameState::Valid => {
                    if f.waiting_readers > 0 {
                        f.waiting_readers -= 1;
                    } else {
                        self.stats.hits += 1;
                        if f.prefetched {
                            self.stats.prefetch_hits += 1;
                        }
                    }
                    f.prefetched = false;
                    self.touch(frame);
                    return Ok(Access::Ready);
                }
                FrameState::Reading(token) => {
                    f.waiting_readers += 1;
                    self.stats.blocking_reads += 1;
                    return Ok(Access::Wait(token));
                }
                FrameState::Free => {}
            }
        }
        if let Some(error) = self.read_errors.remove(&block) {
            return Err(CacheError::Device { block, error });
        }
        if let Some(&token) = self.writes_in_flight.get(&block) {
            // The disk's copy is stale until this write lands.
            return Ok(Access::Wait(token));
        }
        match self.start_read(block)? {
            Ok(token) => {
                self.stats.misses += 1;
                self.stats.blocking_reads += 1;
                if let Some(frame) = self.frame_of(block) {
                    self.frames[frame].waiting_readers = 1;
                }
                Ok(Access::Wait(token))
            }
            Err(token) => Ok(Access::Wait(token)),
        }
    }

    /// Starts reading `block` if it is neither cached nor in flight, without evicting pinned or
    /// in-flight frames and without waiting. Returns whether a read was issued.
    pub fn prefetch(&mut self, block: u64) -> Result<bool, CacheError> {
        self.check_block(block)?;
        if self.index.contains_key(&block) || self.writes_in_flight.contains_key(&block) {
            return Ok(false);
        }
        match self.start_read(block) {
            Ok(Ok(_)) => {
                self.stats.async_reads += 1;
                if let Some(frame) = self.frame_of(block) {
                    self.frames[frame].prefetched = true;
                }
                Ok(true)
            }
            // No frame or queue room now: read-ahead is advice, skip it.
            Ok(Err(_)) | Err(CacheError::AllPinned) => Ok(false),
            Err(CacheError::Device { error: DeviceError::QueueFull, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes a frame for `block` whose contents the caller will overwrite entirely, without
    /// reading the disk. The frame starts zeroed (if not already cached) and dirty.
    pub fn begin_overwrite(&mut self, block: u64) -> Result<Access, CacheError> {
        self.check_block(block)?;
        if let Some(frame) = self.frame_of(block) {
            return match self.frames[frame].state {
                FrameState::Valid => {
                    self.frames[frame].dirty = true;
                    self.touch(frame);
                    Ok(Access::Ready)
                }
                FrameState::Reading(token) => Ok(Access::Wait(token)),
                FrameState::Free => Err(CacheError::NotResident { block }),
            };
        }
        let frame = match self.take_frame()? {
            Ok(frame) => frame,
            Err(token) => return Ok(Access::Wait(token)),
        };
        let f = &mut self.frames[frame];
        if f.data.len() == self.block_size {
            f.data.fill(0);
        } else {
            f.data = vec![0; self.block_size];
        }
        self.read_errors.remove(&block);
        let f = &mut self.frames[frame];
        f.block = block;
        f.state = FrameState::Valid;
        f.dirty = true;
        f.pins = 0;
        f.prefetched = false;
        f.waiting_readers = 0;
        self.index.insert(block, frame);
        self.touch(frame);
        Ok(Access::Ready)
    }

    /// The contents of a resident block.
    pub fn data(&self, block: u64) -> Result<&[u8], CacheError> {
        let frame = self.valid_frame(block)?;
        Ok(&self.frames[frame].data)
    }

    /// The contents of a resident block, for modification: marks it dirty.
    pub fn data_mut(&mut self, block: u64) -> Result<&mut [u8], CacheError> {
        let frame = self.valid_frame(block)?;
        self.touch(frame);
        let f = &mut self.frames[frame];
        f.dirty = true;
        Ok(&mut f.data)
    }

    /// Copies `buf.len()` bytes at `offset` of a resident block.
    pub fn copy_out(&self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), CacheError> {
        let data = self.data(block)?;
        let src = offset
            .checked_add(buf.len())
            .and_then(|end| data.get(offset..end))
            .ok_or(CacheError::BadRange { block, offset, len: buf.len() })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    /// Copies `bytes` into a resident block at `offset`, marking it dirty.
    pub fn copy_in(&mut self, block: u64, offset: usize, bytes: &[u8]) -> Result<(), CacheError> {
        let len = bytes.len();
        let data = self.data_mut(block)?;
        let dst = offset
            .checked_add(len)
            .and_then(|end| data.get_mut(offset..end))
            .ok_or(CacheError::BadRange { block, offset, len })?;
        dst.copy_from_slice(bytes);
        Ok(())
    }

    /// Keeps a resident block from eviction until the matching `unpin`.
    pub fn pin(&mut self, block: u64) -> Result<(), CacheError> {
        let frame = self.valid_frame(block)?;
        self.frames[frame].pins += 1;
        Ok(())
    }

    pub fn unpin(&mut self, block: u64) -> Result<(), CacheError> {
        let frame = self.frame_of(block).ok_or(CacheError::NotResident { block })?;
        let f = &mut self.frames[frame];
        f.pins = f.pins.saturating_sub(1);
        Ok(())
    }

    pub fn pin_count(&self, block: u64) -> u32 {
        self.frame_of(block).map_or(0, |f| self.frames[f].pins)
    }

    /// Drops a clean or dirty block without writing it (the file system freed it).
    pub fn discard(&mut self, block: u64) -> Result<(), CacheError> {
        let Some(frame) = self.frame_of(block) else { return Ok(()) };
        let f = &mut self.frames[frame];
        if f.state != FrameState::Valid {
            return Ok(());
        }
        if f.pins > 0 {
            return Err(CacheError::Pinned { block });
        }
        self.release_frame(frame);
        Ok(())
    }

    fn write_back(&mut self, frame: usize) -> Result<bool, CacheError> {
        let block = self.frames[frame].block;
        if !self.frames[frame].dirty || self.writes_in_flight.contains_key(&block) {
            return Ok(false);
        }
        let copy = self.frames[frame].data.clone();
        match self.submit_write(block, copy) {
            Ok(_) => {
                self.frames[frame].dirty = false;
                Ok(true)
            }
            Err(DeviceError::QueueFull) => Ok(false),
            Err(error) => Err(CacheError::Device { block, error }),
        }
    }

    /// Submits write-backs of up to `max` dirty blocks, least recently used first, for the
    /// periodic writer. Never waits. Returns how many were submitted.
    pub fn flush_some(&mut self, max: usize) -> Result<usize, CacheError> {
        let mut dirty: Vec<(u64, usize)> = self
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| f.dirty && f.state == FrameState::Valid)
            .map(|(i, f)| (f.last_use, i))
            .collect();
        dirty.sort_unstable();
        let mut submitted = 0;
        for (_, frame) in dirty {
            if submitted >= max {
                break;
            }
            if self.write_back(frame)? {
                submitted += 1;
            }
        }
        Ok(submitted)
    }

    /// One step of a sync of `blocks` (all blocks if `None`): submits write-backs of the dirty
    /// ones, then answers `Wait` while any of their writes is in flight, `Ready` when all are on
    /// disk. A write-back failure since the last sync is reported once.
    pub fn begin_sync(&mut self, blocks: Option<&[u64]>) -> Result<Access, CacheError> {
        // Reported before resubmitting: a block that always fails would otherwise be retried
        // forever.
        if let Some(error) = self.write_error.take() {
            return Err(error);
        }
        let frames: Vec<usize> = match blocks {
            None => (0..self.frames.len()).collect(),
            Some(list) => list.iter().filter_map(|b| self.frame_of(*b)).collect(),
        };
        for &frame in &frames {
            if self.frames[frame].state == FrameState::Valid {
                self.write_back(frame)?;
            }
        }
        let waiting = match blocks {
            // The newest write: when it is done the older ones usually are too, so the caller
            // rescans the frames once, not once per write.
            None => self.writes_in_flight.values().max().copied(),
            Some(list) => list.iter().find_map(|b| self.writes_in_flight.get(b).copied()),
        };
        if let Some(token) = waiting {
            return Ok(Access::Wait(token));
        }
        let still_dirty = frames.iter().any(|&f| self.frames[f].dirty);
        if still_dirty {
            // Refused for a full queue: wait for anything to drain.
            return match self.any_pending() {
                Some(token) => Ok(Access::Wait(token)),
                None => Err(self.write_error.take().unwrap_or(CacheError::AllPinned)),
            };
        }
        if let Some(error) = self.write_error.take() {
            return Err(error);
        }
        Ok(Access::Ready)
    }
}

/// Sleeps until a request completes. The kernel implements this with a wait queue (dropping its
/// lock around the sleep); host tests poll the device.
pub trait Waiter<D: BlockDevice> {
    fn wait(&mut self, cache: &mut BlockCache<D>, token: RequestToken) -> Result<(), CacheError>;
}

/// Waits by polling the device, giving up after `max_polls` polls without completion.
#[derive(Clone, Copy, Debug)]
pub struct PollingWaiter {
    pub max_polls: u64,
}

impl Default for PollingWaiter {
    fn default() -> Self {
        Self { max_polls: 1_000_000 }
    }
}

impl<D: BlockDevice> Waiter<D> for PollingWaiter {
    fn wait(&mut self, cache: &mut BlockCache<D>, token: RequestToken) -> Result<(), CacheError> {
        let mut polls = 0;
        while !cache.is_done(token) {
            if polls >= self.max_polls {
                return Err(CacheError::Stuck { token });
            }
            cache.process_completions(|_| {});
            polls += 1;
        }
        Ok(())
    }
}

impl<D: BlockDevice> BlockCache<D> {
    /// Repeats `step` until it answers `Ready`, waiting with `waiter` in between.
    pub fn wait_for<W: Waiter<D>>(
        &mut self,
        waiter: &mut W,
        mut step: impl FnMut(&mut Self) -> Result<Access, CacheError>,
    ) -> Result<(), CacheError> {
        loop {
            match step(self)? {
                Access::Ready => return Ok(()),
                Access::Wait(token) => waiter.wait(self, token)?,
            }
        }
    }

    /// Reads `buf.len()` bytes at `offset` of `block`, waiting as needed.
    pub fn read<W: Waiter<D>>(
        &mut self,
        waiter: &mut W,
        block: u64,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), CacheError> {
        self.wait_for(waiter, |c| c.begin_read(block))?;
        self.copy_out(block, offset, buf)
    }

    /// Writes all dirty blocks and waits until they are on disk.
    pub fn sync<W: Waiter<D>>(&mut self, waiter: &mut W) -> Result<(), CacheError> {
        self.wait_for(waiter, |c| c.begin_sync(None))
    }

    /// Writes the listed blocks (an fsync) and waits until they are on disk.
    pub fn sync_blocks<W: Waiter<D>>(&mut self, waiter: &mut W, blocks: &[u64]) -> Result<(), CacheError> {
        self.wait_for(waiter, |c| c.begin_sync(Some(blocks)))
    }
}

/// A cache and a waiter together: the synchronous block access the file system uses when the
/// caller may simply block (host tests, a kernel thread holding the file-system lock).
pub struct CachedBlocks<D: BlockDevice, W: Waiter<D>> {
    pub cache: BlockCache<D>,
    pub waiter: W,
}

impl<D: BlockDevice, W: Waiter<D>> CachedBlocks<D, W> {
    pub fn new(cache: BlockCache<D>, waiter: W) -> Self {
        Self { cache, waiter }
    }

    pub fn into_cache(self) -> BlockCache<D> {
        self.cache
    }
}

impl<D: BlockDevice, W: Waiter<D>> crate::ext2::BlockAccess for CachedBlocks<D, W> {
    fn block_size(&self) -> usize {
        self.cache.block_size()
    }

    fn block_count(&self) -> u64 {
        self.cache.block_count()
    }

    fn read_at(&mut self, block: u64, offset: usize, buf: &mut [u8]) -> Result<(), CacheError> {
        self.cache.read(&mut self.waiter, block, offset, buf)
    }

    fn write_at(&mut self, block: u64, offset: usize, bytes: &[u8]) -> Result<(), CacheError> {
        let whole = offset == 0 && bytes.len() == self.cache.block_size();
        let cache = &mut self.cache;
        if whole {
            cache.wait_for(&mut self.waiter, |c| c.begin_overwrite(block))?;
        } else {
            cache.wait_for(&mut self.waiter, |c| c.begin_read(block))?;
        }
        // Completions are collected here too, so that a write-only workload does not leave every
        // write-back in the device queue until the next read.
        cache.process_completions(|_| {});
        cache.copy_in(block, offset, bytes)
    }

    fn zero_block(&mut self, block: u64) -> Result<(), CacheError> {
        self.cache.wait_for(&mut self.waiter, |c| c.begin_overwrite(block))?;
        self.cache.data_mut(block)?.fill(0);
        Ok(())
    }

    fn prefetch(&mut self, block: u64) -> Result<bool, CacheError> {
        self.cache.prefetch(block)
    }

    fn read_resident(&mut self, block: u64, offset: usize, buf: &mut [u8]) -> Option<Result<(), CacheError>> {
        (self.cache.residency(block) == Residency::Cached).then(|| self.cache.copy_out(block, offset, buf))
    }

    fn forget(&mut self, block: u64) {
        // A pinned freed block stays until unpinned and is written back harmlessly.
        let _ = self.cache.discard(block);
    }

    fn sync(&mut self) -> Result<(), CacheError> {
        self.cache.sync(&mut self.waiter)
    }

    fn sync_blocks(&mut self, blocks: &[u64]) -> Result<(), CacheError> {
        self.cache.sync_blocks(&mut self.waiter, blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;

    impl<D: BlockDevice> BlockCache<D> {
        /// The bookkeeping agrees with itself: every frame is free or indexed exactly once, the
        /// LRU list holds exactly the valid frames under their stamps.
        fn check_invariants(&self) {
            let mut seen = vec![0; self.frames.len()];
            for &f in &self.free {
                assert_eq!(self.frames[f].state, FrameState::Free);
                seen[f] += 1;
            }
            for (&block, &f) in &self.index {
                assert_eq!(self.frames[f].block, block);
                assert_ne!(self.frames[f].state, FrameState::Free);
                seen[f] += 1;
            }
            assert!(seen.iter().all(|&n| n == 1), "frames free or indexed once: {seen:?}");
            let valid = self.frames.iter().filter(|f| f.state == FrameState::Valid).count();
            assert_eq!(self.lru.len(), valid);
            for (&stamp, &f) in &self.lru {
                assert_eq!(self.frames[f].last_use, stamp);
                assert_eq!(self.frames[f].state, FrameState::Valid);
            }
            for (&block, token) in &self.writes_in_flight {
                assert!(matches!(self.pending.get(token), Some(Pending::Write { block: b }) if *b == block));
            }
        }
    }

    /// Random reads, writes, prefetches, pins and flushes against a model of the disk's logical
    /// contents, with requests in flight and a small device queue.
    #[test]
    fn random_operations_match_a_model() {
        const BLOCKS: usize = 32;
        const BS: usize = 512;
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let disk = RamDisk::new(BLOCKS as u64).with_completion_delay(3).with_queue_depth(4);
        let mut cache = BlockCache::new(disk, BS, 6).unwrap();
        let mut waiter = PollingWaiter::default();
        let mut model = vec![vec![0u8; BS]; BLOCKS];
        let mut pinned: Vec<u64> = Vec::new();
        for step in 0..20_000u32 {
            let block = next(BLOCKS as u64);
            match next(10) {
                0 | 1 => {
                    let mut buf = vec![0; BS];
                    cache.read(&mut waiter, block, 0, &mut buf).unwrap();
                    assert_eq!(buf, model[block as usize], "step {step} block {block}");
                }
                2 | 3 => {
                    let offset = next(BS as u64 - 8) as usize;
                    let bytes = step.to_le_bytes();
                    cache.wait_for(&mut waiter, |c| c.begin_read(block)).unwrap();
                    cache.copy_in(block, offset, &bytes).unwrap();
                    model[block as usize][offset..offset + 4].copy_from_slice(&bytes);
                }
                4 => {
                    cache.wait_for(&mut waiter, |c| c.begin_overwrite(block)).unwrap();
                    let fill = vec![step as u8; BS];
                    cache.copy_in(block, 0, &fill).unwrap();
                    model[block as usize] = fill;
                }
                5 => {
                    cache.prefetch(block).unwrap();
                }
                6 => {
                    if pinned.len() < 3 && cache.is_cached(block) {
                        cache.pin(block).unwrap();
                        pinned.push(block);
                    } else if let Some(b) = pinned.pop() {
                        cache.unpin(b).unwrap();
                    }
                }
                7 => {
                    cache.flush_some(2).unwrap();
                }
                8 => {
                    cache.process_completions(|_| {});
                }
                _ => {
                    if next(20) == 0 {
                        cache.sync(&mut waiter).unwrap();
                        assert_eq!(cache.dirty_count(), 0);
                        for (b, expected) in model.iter().enumerate() {
                            assert_eq!(&cache.device().bytes()[b * BS..(b + 1) * BS], &expected[..], "block {b} after sync");
                        }
                    }
                }
            }
            cache.check_invariants();
            assert!(cache.device().in_flight() <= 4);
        }
        let s = cache.stats();
        assert!(s.hits > 0 && s.misses > 0 && s.evictions > 0 && s.writebacks > 0 && s.prefetch_hits > 0);
    }
}
