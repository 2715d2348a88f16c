//! The hardware-free half of the kernel's storage stack, built for the host and for
//! `x86_64-unknown-none`.
//!
//! - [`block`]: the [`block::BlockDevice`] trait, shaped for an interrupt-driven disk with several
//!   requests in flight (submit now, completion later), and [`block::RamDisk`], a RAM-backed
//!   device with an optional completion delay so that host tests see requests in flight.
//! - [`cache`]: the buffer cache: a bounded pool of blocks, LRU with pin counts, dirty tracking,
//!   write-back on sync, on eviction and periodically, and asynchronous reads (a reader of a block
//!   already in flight waits for that request and never issues a second one). Waiting is the
//!   caller's business: the cache answers `Wait(token)` and the kernel sleeps on a wait queue.
//! - [`ext2`]: ext2 revision 1 (no journal), read and write, over any [`ext2::BlockAccess`]
//!   (normally the cache), with the file block map exposed for read-ahead.
//!
//! It is not a driver: there is no virtio, no interrupt handling, no locking and no system-call
//! layer here; the kernel supplies those around it. A corrupted image gives a named error, never a
//! panic.
//!
//! ```ignore
//! use storage::{block::RamDisk, cache::{BlockCache, CachedBlocks, PollingWaiter}, ext2::{self, Ext2}};
//! let mut disk = RamDisk::from_bytes(image);                 // the kernel: its virtio-blk device
//! let block_size = ext2::probe_block_size(&mut disk, 1000)?;
//! let cache = BlockCache::new(disk, block_size, 1024)?;      // 1024 frames
//! let mut fs = Ext2::mount(CachedBlocks::new(cache, PollingWaiter::default()))?;
//! let ino = fs.create_path("/notes.txt", 0o644)?;
//! fs.write(ino, 0, b"hello")?;
//! fs.fsync(ino)?;
//! let next = fs.block_map(ino, 1)?;                        // read-ahead: file block -> disk block
//! ```
//!
//! Host tests (`tests/`) build images with `mke2fs -d`, run operations through the cache over a
//! RamDisk whose requests stay in flight, and check the result with `e2fsck -fn` and `debugfs`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod block;
pub mod cache;
pub mod ext2;
pub mod pattern;
