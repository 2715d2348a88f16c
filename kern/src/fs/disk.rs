//! The disk file system: ext2 (the `storage` crate) over the buffer cache over the first
//! virtio disk, mounted at `/` at boot, behind one sleeping lock (its holder may wait for the
//! disk; other threads sleep on the lock meanwhile).
use alloc::sync::Arc;
use alloc::vec::Vec;

use storage::block::{BlockDevice, Completion, DeviceError, RequestToken};
use storage::cache::{BlockCache, CacheError, CachedBlocks, Waiter};
use storage::ext2::{self, Ext2};
use sysabi::Error;

use crate::dev::virtio_blk::{self, Disk};
use crate::task::SleepLock;

/// A disk as the cache sees it: requests go to the driver, completions come from what its
/// interrupt handler collected.
pub struct DiskDevice(pub Arc<Disk>);

impl BlockDevice for DiskDevice {
    fn sector_count(&self) -> u64 {
        self.0.sectors()
    }
    fn submit_read(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        self.0.with(|d| d.submit_read(sector, buffer))
    }
    fn submit_write(&mut self, sector: u64, buffer: Vec<u8>) -> Result<RequestToken, DeviceError> {
        self.0.with(|d| d.submit_write(sector, buffer))
    }
    fn poll_completion(&mut self) -> Option<Completion> {
        self.0.with(|d| d.poll_completion())
    }
}

/// Sleeps on the disk's wait queue until request `token` has completed (the interrupt handler
/// wakes it).
pub struct KernelWaiter(pub Arc<Disk>);

impl Waiter<DiskDevice> for KernelWaiter {
    fn wait(&mut self, cache: &mut BlockCache<DiskDevice>, token: RequestToken) -> Result<(), CacheError> {
        loop {
            cache.process_completions(|_| {});
            if cache.is_done(token) {
                return Ok(());
            }
            let disk = &self.0;
            disk.completions.wait_until(|| disk.with(|d| d.has_completions()));
        }
    }
}

pub type Fs = Ext2<CachedBlocks<DiskDevice, KernelWaiter>>;

/// The mounted file system, if any.
pub static FS: SleepLock<Option<Fs>> = SleepLock::new(None);

/// Seconds the file system's clock starts from (the kernel has no clock of the day):
/// 2026-01-01 00:00:00 UTC, plus the time since boot.
const EPOCH: u64 = 1_767_225_600;

fn now() -> u32 {
    u32::try_from(EPOCH + crate::time::uptime_ns() / 1_000_000_000).unwrap_or(u32::MAX)
}

/// Why the file system could not be mounted.
#[derive(Debug)]
pub enum MountError {
    NoDisk,
    Probe(ext2::Error),
    Cache(CacheError),
    Mount(ext2::Error),
}

impl core::fmt::Display for MountError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            MountError::NoDisk => write!(f, "no disk"),
            MountError::Probe(e) | MountError::Mount(e) => write!(f, "{e}"),
            MountError::Cache(e) => write!(f, "buffer cache: {e}"),
        }
    }
}

/// Mounts ext2 from the first disk with a cache of `cache_blocks` blocks.
pub fn mount(cache_blocks: usize) -> Result<ext2::FsStats, MountError> {
    let disk = virtio_blk::disks().into_iter().next().ok_or(MountError::NoDisk)?;
    let mut device = DiskDevice(disk.clone());
    let block_size = ext2::probe_block_size(&mut device, 50_000_000).map_err(MountError::Probe)?;
    let cache = BlockCache::new(device, block_size, cache_blocks).map_err(MountError::Cache)?;
    let mut fs = Ext2::mount(CachedBlocks::new(cache, KernelWaiter(disk))).map_err(MountError::Mount)?;
    fs.set_time(now());
    let stats = fs.stats();
    *FS.lock() = Some(fs);
    Ok(stats)
}

/// How often dirty blocks are written back without anyone asking (the periodic writer runs on
/// the first file-system call after this much time), and how many at most each time.
const WRITEBACK_INTERVAL_NS: u64 = 1_000_000_000;
const WRITEBACK_BATCH: usize = 64;

static LAST_WRITEBACK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Runs `f` on the mounted file system (`NoFileSystem` if there is none), with its clock set.
pub fn with_fs<R>(f: impl FnOnce(&mut Fs) -> Result<R, Error>) -> Result<R, Error> {
    let mut guard = FS.lock();
    let fs = guard.as_mut().ok_or(Error::NoFileSystem)?;
    fs.set_time(now());
    // Requests the interrupt handler saw finish (read-ahead, write-back) become valid blocks
    // now, so that a read of one of them does not count as waiting.
    fs.access_mut().cache.process_completions(|_| {});
    let r = f(fs);
    periodic_writeback(fs);
    r
}

/// The periodic writer: at most once per interval, submits write-backs of the least recently
/// used dirty blocks (without waiting for them), so that data does not stay only in memory
/// until an eviction or a sync.
fn periodic_writeback(fs: &mut Fs) {
    use core::sync::atomic::Ordering;
    let now = crate::time::uptime_ns();
    if now.saturating_sub(LAST_WRITEBACK.load(Ordering::Relaxed)) < WRITEBACK_INTERVAL_NS {
        return;
    }
    LAST_WRITEBACK.store(now, Ordering::Relaxed);
    if let Err(e) = fs.access_mut().cache.flush_some(WRITEBACK_BATCH) {
        log::warn!("file system: periodic write-back: {e}");
    }
}

/// The system-call error for a file-system error.
pub fn error(e: ext2::Error) -> Error {
    match e {
        ext2::Error::NotFound => Error::NotFound,
        ext2::Error::Exists => Error::Exists,
        ext2::Error::NotADirectory => Error::NotADirectory,
        ext2::Error::IsADirectory => Error::IsADirectory,
        ext2::Error::NotEmpty => Error::NotEmpty,
        ext2::Error::NoSpace | ext2::Error::TooManyLinks => Error::NoSpace,
        ext2::Error::NameTooLong => Error::NameTooLong,
        ext2::Error::FileTooLarge => Error::FileTooLarge,
        ext2::Error::ReadOnly => Error::ReadOnly,
        ext2::Error::InvalidArgument { .. } => Error::InvalidArgument,
        ext2::Error::IncompatibleFeatures { .. } | ext2::Error::UnsupportedBlockSize { .. } => Error::NoFileSystem,
        ext2::Error::Corrupt { what, at } => {
            log::warn!("file system: corrupt at {at}: {what}");
            Error::Corrupt
        }
        ext2::Error::Io(e) => {
            log::warn!("file system: {e}");
            Error::IoError
        }
    }
}

#[cfg(feature = "ktest")]
mod ktests {
    use alloc::vec;

    use storage::ext2;
    use sysabi::Error;

    use super::with_fs;
    use crate::{check, ktest};

    fn fail(message: alloc::string::String) -> crate::ktest::TestFailure {
        crate::ktest::TestFailure { message, file: file!(), line: line!() }
    }

    ktest! {
        // vda of the test build is build/corrupt.img (run.sh: the file system image with the
        // directory block of /bad overwritten and /data/ra3.bin's indirect pointer past the
        // disk). Every operation on the damage answers a named error; the rest still works.
        fn a_corrupted_image_gives_named_errors_and_never_panics() -> TestResult {
            let r = with_fs(|fs| {
                let corrupt = |r: Result<_, ext2::Error>| matches!(r, Err(ext2::Error::Corrupt { .. }));
                let bad = fs.lookup("/bad").map_err(super::error)?;
                let dir_listing_corrupt = corrupt(fs.readdir(bad).map(|_| ()));
                let lookup_corrupt = corrupt(fs.lookup("/bad/readme").map(|_| ()));
                let create_corrupt = fs.create_path("/bad/new", 0o644).is_err();
                let ra3 = fs.lookup("/data/ra3.bin").map_err(super::error)?;
                let mut buf = vec![0u8; 1024];
                let direct_ok = fs.read(ra3, 0, &mut buf).is_ok();
                let indirect_corrupt = corrupt(fs.read(ra3, 20 * 1024, &mut buf).map(|_| ()));
                let readme_ok = fs.lookup("/data/README").is_ok();
                Ok((dir_listing_corrupt, lookup_corrupt, create_corrupt, direct_ok, indirect_corrupt, readme_ok))
            });
            let (listing, lookup, create, direct, indirect, readme) = match r {
                Ok(v) => v,
                Err(Error::NoFileSystem) => return Err(fail("no file system: ./run.sh test attaches build/corrupt.img as vda".into())),
                Err(e) => return Err(fail(alloc::format!("{e}"))),
            };
            check!(listing, "readdir of a directory with a bad rec_len is not Corrupt");
            check!(lookup, "lookup through it is not Corrupt");
            check!(create, "creating a file in it succeeded");
            check!(direct, "the file's direct blocks cannot be read");
            check!(indirect, "a block past the disk is not Corrupt");
            check!(readme, "an intact directory no longer works");
            Ok(())
        }
    }
}
