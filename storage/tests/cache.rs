//! The buffer cache over a RamDisk whose requests stay in flight for a few polls.

use storage::block::{DeviceError, RamDisk, SECTOR_SIZE};
use storage::cache::{Access, BlockCache, CacheError, CacheStats, PollingWaiter, Residency};

const BS: usize = 1024;

/// A disk of 64 blocks; block `b` is filled with byte `b`.
fn disk(delay: u32) -> RamDisk {
    let mut image = vec![0u8; 64 * BS];
    for (b, chunk) in image.chunks_mut(BS).enumerate() {
        chunk.fill(b as u8);
    }
    RamDisk::from_bytes(image).with_completion_delay(delay)
}

fn read_byte(cache: &mut BlockCache<RamDisk>, block: u64) -> u8 {
    let mut b = [0u8];
    cache.read(&mut PollingWaiter::default(), block, 0, &mut b).unwrap();
    b[0]
}

fn drain(cache: &mut BlockCache<RamDisk>) {
    for _ in 0..100 {
        cache.process_completions(|_| {});
    }
}

#[test]
fn least_recently_used_block_is_evicted() {
    let mut cache = BlockCache::new(disk(0), BS, 3).unwrap();
    for b in [0, 1, 2] {
        assert_eq!(read_byte(&mut cache, b), b as u8);
    }
    assert_eq!(read_byte(&mut cache, 0), 0); // 0 is now more recent than 1
    assert_eq!(read_byte(&mut cache, 3), 3);
    assert!(!cache.is_cached(1));
    assert!(cache.is_cached(0) && cache.is_cached(2) && cache.is_cached(3));
    assert_eq!(read_byte(&mut cache, 4), 4);
    assert!(!cache.is_cached(2));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.evictions), (1, 5, 2));
    assert_eq!(cache.device().stats().reads_submitted, 5);
}

#[test]
fn pinned_blocks_are_not_evicted() {
    let mut cache = BlockCache::new(disk(0), BS, 2).unwrap();
    read_byte(&mut cache, 10);
    cache.pin(10).unwrap();
    for b in 11..20 {
        assert_eq!(read_byte(&mut cache, b), b as u8);
    }
    assert!(cache.is_cached(10));
    cache.pin(19).unwrap();
    // Both frames pinned: nothing can be evicted.
    assert_eq!(cache.begin_read(30), Err(CacheError::AllPinned));
    cache.unpin(10).unwrap();
    assert_eq!(cache.pin_count(10), 0);
    assert_eq!(read_byte(&mut cache, 30), 30);
    assert!(!cache.is_cached(10) && cache.is_cached(19));
}

#[test]
fn dirty_blocks_are_written_back_on_eviction_and_sync() {
    let mut cache = BlockCache::new(disk(2), BS, 2).unwrap();
    let mut waiter = PollingWaiter::default();
    cache.wait_for(&mut waiter, |c| c.begin_read(5)).unwrap();
    cache.data_mut(5).unwrap()[..4].copy_from_slice(b"five");
    assert!(cache.is_dirty(5));
    // Two more blocks evict 5; its data goes to the disk, not lost.
    read_byte(&mut cache, 6);
    read_byte(&mut cache, 7);
    assert!(!cache.is_cached(5));
    assert_eq!(cache.stats().writebacks, 1);
    // Read back while the write may still be in flight: the cache waits for it, never reads stale.
    let mut buf = [0u8; 4];
    cache.read(&mut waiter, 5, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"five");

    // sync writes every dirty block and waits.
    cache.wait_for(&mut waiter, |c| c.begin_overwrite(8)).unwrap();
    cache.copy_in(8, 0, &[0xEE; BS]).unwrap();
    cache.copy_in(5, 4, b"!").unwrap();
    assert_eq!(cache.dirty_count(), 2);
    cache.sync(&mut waiter).unwrap();
    assert_eq!(cache.dirty_count(), 0);
    assert_eq!(cache.in_flight(), 0);
    let bytes = cache.device().bytes();
    assert_eq!(&bytes[5 * BS..5 * BS + 5], b"five!");
    assert!(bytes[8 * BS..9 * BS].iter().all(|&b| b == 0xEE));
    assert_eq!(cache.stats().writebacks, 3);
}

#[test]
fn sync_of_some_blocks_leaves_the_others_dirty() {
    let mut cache = BlockCache::new(disk(1), BS, 8).unwrap();
    let mut waiter = PollingWaiter::default();
    for b in [1, 2, 3] {
        cache.wait_for(&mut waiter, |c| c.begin_read(b)).unwrap();
        cache.data_mut(b).unwrap()[0] = 0xAA;
    }
    cache.sync_blocks(&mut waiter, &[1, 3]).unwrap();
    assert!(!cache.is_dirty(1) && cache.is_dirty(2) && !cache.is_dirty(3));
    assert_eq!(cache.device().bytes()[BS], 0xAA);
    assert_eq!(cache.device().bytes()[2 * BS], 2);
    // The periodic writer takes the rest, without waiting.
    assert_eq!(cache.flush_some(10).unwrap(), 1);
    assert!(!cache.is_dirty(2));
    drain(&mut cache);
    assert_eq!(cache.device().bytes()[2 * BS], 0xAA);
}

#[test]
fn two_readers_of_a_block_in_flight_share_one_request() {
    let mut cache = BlockCache::new(disk(5), BS, 4).unwrap();
    let first = cache.begin_read(9).unwrap();
    let second = cache.begin_read(9).unwrap();
    let Access::Wait(token) = first else { panic!("a cold block cannot be ready") };
    assert_eq!(second, Access::Wait(token));
    assert_eq!(cache.residency(9), Residency::InFlight);
    assert!(!cache.is_cached(9));
    assert_eq!(cache.device().stats().reads_submitted, 1);
    let mut woken = Vec::new();
    while !cache.is_done(token) {
        cache.process_completions(|t| woken.push(t));
    }
    assert_eq!(woken, [token]);
    // Both readers come back and find the data; no second request was made.
    assert_eq!(cache.begin_read(9).unwrap(), Access::Ready);
    assert_eq!(cache.begin_read(9).unwrap(), Access::Ready);
    assert_eq!(cache.data(9).unwrap()[0], 9);
    assert_eq!(cache.device().stats().reads_submitted, 1);
    assert_eq!(
        cache.stats(),
        CacheStats { hits: 0, misses: 1, blocking_reads: 2, ..CacheStats::default() }
    );
    // A third reader now is a plain hit.
    assert_eq!(cache.begin_read(9).unwrap(), Access::Ready);
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn prefetch_submits_now_and_a_later_read_finds_the_block() {
    let mut cache = BlockCache::new(disk(3), BS, 8).unwrap();
    assert!(cache.prefetch(20).unwrap());
    assert!(!cache.prefetch(20).unwrap()); // already in flight
    assert!(cache.prefetch(21).unwrap());
    assert_eq!(cache.stats().async_reads, 2);
    drain(&mut cache);
    assert!(cache.is_cached(20));
    assert_eq!(read_byte(&mut cache, 20), 20);
    // A reader that arrives while the prefetch is in flight waits for it: a blocking read, no
    // second request.
    assert!(cache.prefetch(22).unwrap());
    assert_eq!(read_byte(&mut cache, 22), 22);
    assert_eq!(read_byte(&mut cache, 21), 21);
    let s = cache.stats();
    assert_eq!((s.hits, s.prefetch_hits, s.misses, s.blocking_reads, s.async_reads), (2, 2, 0, 1, 3));
    assert_eq!(cache.device().stats().reads_submitted, 3);
}

#[test]
fn a_full_device_queue_makes_callers_wait_not_fail() {
    let disk = disk(2).with_queue_depth(1);
    let mut cache = BlockCache::new(disk, BS, 8).unwrap();
    assert!(cache.prefetch(1).unwrap());
    // Read-ahead is advice: with the queue full it is skipped.
    assert!(!cache.prefetch(2).unwrap());
    // A demand read waits for room.
    assert_eq!(read_byte(&mut cache, 3), 3);
    for b in 4..8 {
        cache.wait_for(&mut PollingWaiter::default(), |c| c.begin_overwrite(b)).unwrap();
    }
    cache.sync(&mut PollingWaiter::default()).unwrap();
    assert_eq!(cache.dirty_count(), 0);
}

#[test]
fn device_errors_are_reported_not_retried_forever() {
    let mut disk = disk(1);
    disk.fail_sector(Some((12 * BS / SECTOR_SIZE) as u64));
    let mut cache = BlockCache::new(disk, BS, 4).unwrap();
    let mut buf = [0u8; 1];
    let err = cache.read(&mut PollingWaiter::default(), 12, 0, &mut buf);
    assert!(matches!(err, Err(CacheError::Device { block: 12, error: DeviceError::Failed { .. } })));
    assert!(!cache.is_cached(12));
    // The error is reported once; when the device recovers the block reads again.
    cache.device_mut().fail_sector(None);
    cache.read(&mut PollingWaiter::default(), 12, 0, &mut buf).unwrap();
    assert_eq!(buf[0], 12);
    cache.discard(12).unwrap();
    cache.device_mut().fail_sector(Some((12 * BS / SECTOR_SIZE) as u64));
    assert_eq!(cache.begin_read(999), Err(CacheError::OutOfRange { block: 999 }));
    // A failed write-back is reported by the next sync.
    cache.wait_for(&mut PollingWaiter::default(), |c| c.begin_overwrite(12)).unwrap();
    let err = cache.sync(&mut PollingWaiter::default());
    assert!(matches!(err, Err(CacheError::WriteBackFailed { block: 12, .. })));
}

#[test]
fn a_device_that_never_completes_is_reported_stuck() {
    let mut cache = BlockCache::new(disk(u32::MAX), BS, 4).unwrap();
    let mut buf = [0u8; 1];
    let err = cache.read(&mut PollingWaiter { max_polls: 50 }, 1, 0, &mut buf);
    assert!(matches!(err, Err(CacheError::Stuck { .. })));
}
