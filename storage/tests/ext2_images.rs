//! ext2 against images made by `mke2fs`; every test ends with `e2fsck -fn` and compares file
//! contents with what `debugfs` reads.

mod common;

use common::*;
use storage::ext2::{Error, FileKind, ROOT_INODE};

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    Rng(seed | 1).bytes(len)
}

fn names(fs: &mut Fs, dir: u32) -> Vec<String> {
    let mut list: Vec<String> = fs.readdir(dir).unwrap().iter().map(|e| e.name_str().to_string()).collect();
    list.sort();
    list
}

fn basic_operations(block_size: u32) {
    let hello = b"hello from the host\n".to_vec();
    let big = pattern(50_000, 7);
    let image = make_image(
        block_size,
        8 * 1024,
        &[("hello.txt", hello.clone()), ("docs/big.bin", big.clone()), ("empty/", vec![])],
        &[],
    );
    let mut fs = mount(image);
    assert!(!fs.is_read_only());

    // What mke2fs wrote reads back.
    let ino = fs.lookup("/hello.txt").unwrap();
    assert_eq!(read_all(&mut fs, ino), hello);
    let big_ino = fs.lookup("/docs/big.bin").unwrap();
    assert_eq!(read_all(&mut fs, big_ino), big);
    assert_eq!(fs.lookup("/docs/../hello.txt").unwrap(), ino);
    assert_eq!(names(&mut fs, ROOT_INODE), [".", "..", "docs", "empty", "hello.txt", "lost+found"]);
    assert_eq!(fs.lookup("/nope"), Err(Error::NotFound));
    assert_eq!(fs.lookup("/hello.txt/x"), Err(Error::NotADirectory));
    let st = fs.stat(big_ino).unwrap();
    assert_eq!((st.kind, st.size, st.links), (FileKind::Regular, 50_000, 1));

    // Create, write (a partial block in the middle of existing data too), mkdir, rename.
    let new = fs.create_path("/docs/new.txt", 0o644).unwrap();
    assert_eq!(fs.create_path("/docs/new.txt", 0o644), Err(Error::Exists));
    let text = pattern(3000, 9);
    assert_eq!(fs.write(new, 0, &text).unwrap(), 3000);
    let mut patched = big.clone();
    patched[1000..1010].copy_from_slice(b"0123456789");
    fs.write(big_ino, 1000, b"0123456789").unwrap();
    assert_eq!(read_all(&mut fs, big_ino), patched);

    let sub = fs.mkdir_path("/docs/sub", 0o755).unwrap();
    assert_eq!(fs.stat(sub).unwrap().links, 2);
    let docs = fs.lookup("/docs").unwrap();
    assert_eq!(fs.stat(docs).unwrap().links, 3);
    assert_eq!(fs.lookup("/docs/sub/..").unwrap(), docs);
    fs.rename_path("/docs/new.txt", "/docs/sub/moved.txt").unwrap();
    assert_eq!(fs.lookup("/docs/new.txt"), Err(Error::NotFound));
    assert_eq!(fs.lookup("/docs/sub/moved.txt").unwrap(), new);
    // A directory moved across directories: `..` and both parents' link counts follow.
    fs.rename_path("/docs/sub", "/empty/sub2").unwrap();
    let empty = fs.lookup("/empty").unwrap();
    assert_eq!(fs.lookup("/empty/sub2/..").unwrap(), empty);
    assert_eq!(fs.stat(docs).unwrap().links, 2);
    assert_eq!(fs.stat(empty).unwrap().links, 3);
    assert_eq!(
        fs.rename_path("/empty", "/empty/sub2/inside"),
        Err(Error::InvalidArgument { what: "cannot move a directory into itself" })
    );
    // Rename over an existing file replaces it.
    fs.rename_path("/hello.txt", "/docs/big.bin").unwrap();
    assert_eq!(fs.lookup("/docs/big.bin").unwrap(), ino);

    // rmdir: only empty directories.
    assert_eq!(fs.rmdir_path("/empty"), Err(Error::NotEmpty));
    assert_eq!(fs.unlink_path("/empty"), Err(Error::IsADirectory));
    assert_eq!(fs.rmdir_path("/docs/big.bin"), Err(Error::NotADirectory));
    fs.mkdir_path("/gone", 0o700).unwrap();
    fs.rmdir_path("/gone").unwrap();
    assert_eq!(fs.lookup("/gone"), Err(Error::NotFound));

    // Truncate to a partial block and grow again: the tail reads as zeros.
    fs.truncate(new, 1500).unwrap();
    fs.write(new, 2500, b"x").unwrap();
    let mut expect = text[..1500].to_vec();
    expect.resize(2500, 0);
    expect.push(b'x');
    assert_eq!(read_all(&mut fs, new), expect);

    let free_before = fs.stats().free_blocks;
    let unlink_me = fs.create_path("/unlink-me", 0o600).unwrap();
    fs.write(unlink_me, 0, &pattern(20_000, 3)).unwrap();
    fs.unlink_path("/unlink-me").unwrap();
    assert_eq!(fs.stats().free_blocks, free_before);

    let image = unmount(fs);
    fsck(&image);
    assert_eq!(debugfs_cat(&image, "/docs/big.bin"), hello);
    assert_eq!(debugfs_cat(&image, "/empty/sub2/moved.txt"), expect);
    assert_eq!(debugfs_cat(&image, "/hello.txt"), b"");
}

#[test]
fn basic_operations_1k() {
    basic_operations(1024);
}

#[test]
fn basic_operations_2k() {
    basic_operations(2048);
}

#[test]
fn basic_operations_4k() {
    basic_operations(4096);
}

/// Writes files that end just past each indirect boundary, reads them back, truncates them
/// across the boundaries, and checks the image.
fn indirect_boundaries(block_size: u32, image_kib: u64, block_counts: &[u64]) {
    let image = make_image(block_size, image_kib, &[], &[]);
    let mut fs = mount_with(image, 1024, 0).unwrap();
    let bs = u64::from(block_size);
    let mut expected = Vec::new();
    for (i, &blocks) in block_counts.iter().enumerate() {
        // One partial block past the boundary, so the last block is a fresh partial write.
        let len = (blocks * bs + 100) as usize;
        let data = pattern(len, 100 + i as u64);
        let path = format!("/f{i}");
        let ino = fs.create_path(&path, 0o644).unwrap();
        // In uneven chunks, so that writes straddle blocks.
        let mut off = 0;
        while off < len {
            let n = (len - off).min(1_000_003);
            fs.write(ino, off as u64, &data[off..off + n]).unwrap();
            off += n;
        }
        assert_eq!(read_all(&mut fs, ino), data);
        // Every file block is mapped, and distinct blocks back distinct file blocks.
        let last = fs.block_map(ino, blocks).unwrap();
        assert!(last.is_some());
        assert_eq!(fs.block_map(ino, blocks + 1).unwrap(), None);
        expected.push((path, ino, data));
    }
    let image = unmount(fs);
    fsck(&image);
    for (path, _, data) in &expected {
        assert!(debugfs_cat(&image, path) == *data, "{path} differs under debugfs");
    }

    // Shrink each file to just below its boundary and to nothing: indirect blocks are freed.
    let mut fs = mount_with(image, 1024, 0).unwrap();
    let free_at_start = fs.stats().free_blocks;
    for (_, ino, data) in &mut expected {
        let keep = (data.len() as u64 / bs - 1) * bs - 10;
        fs.truncate(*ino, keep).unwrap();
        data.truncate(keep as usize);
        assert_eq!(read_all(&mut fs, *ino), *data);
    }
    assert!(fs.stats().free_blocks > free_at_start);
    let image = unmount(fs);
    fsck(&image);
    for (path, _, data) in &expected {
        assert!(debugfs_cat(&image, path) == *data, "{path} differs after truncate");
    }
    let mut fs = mount(image);
    let free_blocks_of_empty_fs = {
        let empty = make_image(block_size, image_kib, &[], &[]);
        mount(empty).stats().free_blocks
    };
    for (path, ino, _) in &expected {
        fs.truncate(*ino, 0).unwrap();
        assert_eq!(fs.stat(*ino).unwrap().blocks_512, 0);
        fs.unlink_path(path).unwrap();
    }
    assert_eq!(fs.stats().free_blocks, free_blocks_of_empty_fs);
    fsck(&unmount(fs));
}

#[test]
fn indirect_boundaries_1k_up_to_triple() {
    // 12 direct, 256 single, 65536 double: the last file (64.3 MiB) reaches the triple
    // indirect block.
    indirect_boundaries(1024, 72 * 1024, &[12, 12 + 256, 12 + 256 + 65536]);
}

#[test]
fn indirect_boundaries_4k() {
    indirect_boundaries(4096, 16 * 1024, &[12, 12 + 1024]);
}

#[test]
fn a_64_mib_file_4k() {
    let image = make_image(4096, 80 * 1024, &[], &[]);
    let mut fs = mount_with(image, 256, 2).unwrap();
    let data = pattern(64 << 20, 64);
    let ino = fs.create_path("/big", 0o644).unwrap();
    fs.write(ino, 0, &data).unwrap();
    assert_eq!(fs.stat(ino).unwrap().size, 64 << 20);
    let image = unmount(fs);
    fsck(&image);
    assert!(debugfs_cat(&image, "/big") == data);
}

#[test]
fn many_files_in_one_directory() {
    let image = make_image(1024, 4 * 1024, &[("dir/", vec![])], &[]);
    let mut fs = mount(image);
    let dir = fs.lookup("/dir").unwrap();
    let count = 400;
    for i in 0..count {
        let name = format!("file-with-a-longish-name-{i:04}");
        let ino = fs.create(dir, name.as_bytes(), 0o644).unwrap();
        fs.write(ino, 0, name.as_bytes()).unwrap();
    }
    // 400 entries of 36 bytes: many blocks.
    assert!(fs.stat(dir).unwrap().size >= 14 * 1024);
    assert_eq!(fs.readdir(dir).unwrap().len(), count + 2);
    // Remove every other one; the freed records are reused by new names.
    for i in (0..count).step_by(2) {
        fs.unlink(dir, format!("file-with-a-longish-name-{i:04}").as_bytes()).unwrap();
    }
    let size_before = fs.stat(dir).unwrap().size;
    for i in 0..50 {
        fs.create(dir, format!("again-{i}").as_bytes(), 0o644).unwrap();
    }
    assert_eq!(fs.stat(dir).unwrap().size, size_before);
    let listed = fs.readdir(dir).unwrap();
    assert_eq!(listed.len(), count / 2 + 50 + 2);
    assert!(listed.iter().all(|e| e.kind == FileKind::Regular || e.name_str().starts_with('.')));
    let image = unmount(fs);
    fsck(&image);
    assert_eq!(debugfs_cat(&image, "/dir/file-with-a-longish-name-0399"), b"file-with-a-longish-name-0399");
    let listing = String::from_utf8(debugfs(&image, "ls -l /dir")).unwrap();
    assert!(listing.contains("again-49") && !listing.contains("name-0398"));
}

#[test]
fn names_are_checked() {
    let mut fs = mount(make_image(1024, 1024, &[], &[]));
    let long = "x".repeat(256);
    assert_eq!(fs.create(ROOT_INODE, long.as_bytes(), 0o644), Err(Error::NameTooLong));
    assert!(fs.create(ROOT_INODE, "y".repeat(255).as_bytes(), 0o644).is_ok());
    assert!(matches!(fs.create(ROOT_INODE, b"a/b", 0o644), Err(Error::InvalidArgument { .. })));
    assert!(matches!(fs.mkdir(ROOT_INODE, b"..", 0o755), Err(Error::InvalidArgument { .. })));
    assert!(matches!(fs.rmdir(ROOT_INODE, b".", ), Err(Error::InvalidArgument { .. })));
    fsck(&unmount(fs));
}

#[test]
fn disk_full_gives_no_space_and_changes_nothing() {
    let keep = pattern(5000, 5);
    let image = make_image(1024, 1024, &[("keep.bin", keep.clone())], &[]);
    let mut fs = mount(image);
    let ino = fs.create_path("/filler", 0o644).unwrap();
    let chunk = pattern(64 * 1024, 6);
    let mut written = Vec::new();
    let err = loop {
        match fs.write(ino, written.len() as u64, &chunk) {
            Ok(n) => written.extend_from_slice(&chunk[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::NoSpace);
    let stats = fs.stats();
    let stat = fs.stat(ino).unwrap();
    // A smaller write still fits, then the disk is exactly full.
    assert!(stats.free_blocks < 64);
    let rest = stats.free_blocks as usize;
    let fill = pattern(rest * 1024, 8);
    let mut filled = false;
    for len in (1..=fill.len()).rev().step_by(1024) {
        if fs.write(ino, written.len() as u64, &fill[..len]).is_ok() {
            written.extend_from_slice(&fill[..len]);
            filled = true;
            break;
        }
    }
    assert!(filled || rest == 0, "a write of the remaining space should fit");
    let stats = fs.stats();
    let stat = if filled { fs.stat(ino).unwrap() } else { stat };
    // Everything that needs a block now fails, and changes nothing.
    assert_eq!(fs.write(ino, stat.size + 10 * 1024, b"more"), Err(Error::NoSpace));
    assert_eq!(fs.stats(), stats);
    assert_eq!(fs.stat(ino).unwrap(), stat);
    let _ = fs.mkdir_path("/d", 0o755).map(|_| ()).map_err(|e| assert_eq!(e, Error::NoSpace));
    assert_eq!(read_all(&mut fs, ino), written);
    let image = unmount(fs);
    fsck(&image);
    assert!(debugfs_cat(&image, "/filler") == written);
    assert_eq!(debugfs_cat(&image, "/keep.bin"), keep);
}

#[test]
fn unsupported_features_refuse_or_mount_read_only() {
    // ext4's extents are an incompatible feature: the mount is refused by name.
    let image = make_image(1024, 2048, &[], &["-O", "extent"]);
    assert!(matches!(mount_with(image, 64, 0), Err(Error::IncompatibleFeatures { flags }) if flags & 0x40 != 0));

    // An unknown read-only-compatible feature: reads work, writes are refused.
    let mut image = make_image(1024, 2048, &[("a", b"abc".to_vec())], &[]);
    let ro_compat = 1024 + 100;
    image[ro_compat + 1] |= 0x40; // bit 14: not one this crate knows
    let mut fs = mount_with(image, 64, 0).unwrap();
    assert!(fs.is_read_only());
    let a = fs.lookup("/a").unwrap();
    assert_eq!(read_all(&mut fs, a), b"abc");
    assert_eq!(fs.write(a, 0, b"x"), Err(Error::ReadOnly));
    assert_eq!(fs.create_path("/b", 0o644), Err(Error::ReadOnly));
    assert_eq!(fs.unlink_path("/a"), Err(Error::ReadOnly));
}

#[test]
fn large_sparse_file_past_4_gib() {
    let image = make_image(4096, 8 * 1024, &[], &[]);
    let mut fs = mount(image);
    let ino = fs.create_path("/sparse", 0o644).unwrap();
    let offset = (5u64 << 30) + 123;
    fs.write(ino, offset, b"far away").unwrap();
    fs.write(ino, 0, b"near").unwrap();
    let st = fs.stat(ino).unwrap();
    assert_eq!(st.size, offset + 8);
    // 5 GiB / 4 KiB is past 12 + 1024 + 1024^2 blocks: two data blocks plus the triple-indirect
    // chain (three blocks), 8 sectors each.
    assert_eq!(st.blocks_512, 5 * 8);
    let mut buf = [1u8; 16];
    assert_eq!(fs.read(ino, offset - 8, &mut buf).unwrap(), 16);
    assert_eq!(&buf, b"\0\0\0\0\0\0\0\0far away");
    assert_eq!(fs.block_map(ino, 1).unwrap(), None);
    let image = unmount(fs);
    fsck(&image);
    let stat = String::from_utf8(debugfs(&image, "stat /sparse")).unwrap();
    assert!(stat.contains(&format!("Size: {}", offset + 8)), "{stat}");
}

#[test]
fn the_oracle_notices_damage() {
    // The checks above are only worth something if e2fsck fails on a bad image.
    let mut image = make_image(1024, 1024, &[("a", vec![1; 3000])], &[]);
    image[1024 + 12] ^= 0x10; // superblock free-blocks count
    image[2048 + 12] ^= 0x01; // group 0 free-blocks count
    let caught = std::panic::catch_unwind(|| fsck(&image));
    assert!(caught.is_err());
}

#[test]
fn a_large_directory_made_by_mke2fs() {
    // `e2fsck -D` gives the directory an htree index (dir_index); it is read and modified as a
    // linear directory, which the index's on-disk format allows once the index flag is cleared.
    let files: Vec<(String, Vec<u8>)> =
        (0..600).map(|i| (format!("many/entry-number-{i:05}"), format!("{i}").into_bytes())).collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    let image = index_directories(&make_image(1024, 8 * 1024, &refs, &[]));
    let flags = String::from_utf8(debugfs(&image, "stat /many")).unwrap();
    assert!(flags.contains("Flags: 0x1000"), "not indexed: {flags}");
    let mut fs = mount(image);
    let dir = fs.lookup("/many").unwrap();
    assert_eq!(fs.readdir(dir).unwrap().len(), 602);
    for i in (0..600).step_by(37) {
        let ino = fs.lookup(&format!("/many/entry-number-{i:05}")).unwrap();
        assert_eq!(read_all(&mut fs, ino), format!("{i}").into_bytes());
    }
    fs.unlink(dir, b"entry-number-00000").unwrap();
    for i in 0..40 {
        fs.create(dir, format!("added-{i}").as_bytes(), 0o644).unwrap();
    }
    assert_eq!(fs.readdir(dir).unwrap().len(), 641);
    let image = unmount(fs);
    fsck(&image);
    assert_eq!(debugfs_cat(&image, "/many/entry-number-00599"), b"599");
    assert_eq!(debugfs_cat(&image, "/many/added-39"), b"");
    assert!(String::from_utf8(debugfs(&image, "ls /many")).unwrap().contains("added-39"));
}

#[test]
fn fsync_puts_a_file_on_disk_without_a_full_sync() {
    let image = make_image(1024, 2048, &[], &[]);
    let mut fs = mount_with(image, 4096, 1).unwrap();
    let data = pattern(300 * 1024, 11);
    let ino = fs.create_path("/durable", 0o644).unwrap();
    fs.write(ino, 0, &data).unwrap();
    fs.fsync(ino).unwrap();
    fs.fsync(ROOT_INODE).unwrap();
    // Written after the fsyncs and never synced: lost in the "crash".
    let lost = fs.create_path("/lost", 0o644).unwrap();
    fs.write(lost, 0, b"never synced").unwrap();
    let cache = fs.abandon().into_cache();
    assert!(cache.dirty_count() > 0);
    let image = cache.into_device().into_bytes();
    assert!(debugfs_cat(&image, "/durable") == data);
    assert!(!String::from_utf8_lossy(&debugfs(&image, "ls /")).contains("lost "));
    fsck(&image);
}

#[test]
fn rename_cases() {
    let image = make_image(
        1024,
        2048,
        &[("a/f", b"file a/f".to_vec()), ("b/g", b"file b/g".to_vec()), ("a/e1/", vec![]), ("a/e2/", vec![]), ("b/e3/", vec![]), ("b/full/x", b"x".to_vec())],
        &[],
    );
    let mut fs = mount(image);
    let (a, b) = (fs.lookup("/a").unwrap(), fs.lookup("/b").unwrap());
    let links = |fs: &mut Fs, ino| fs.stat(ino).unwrap().links;
    assert_eq!((links(&mut fs, a), links(&mut fs, b)), (4, 4));
    let free_inodes = fs.stats().free_inodes;

    // A file over a file in another directory: the old target is freed.
    let f = fs.lookup("/a/f").unwrap();
    fs.rename_path("/a/f", "/b/g").unwrap();
    assert_eq!(fs.lookup("/b/g").unwrap(), f);
    assert_eq!(fs.stats().free_inodes, free_inodes + 1);

    // Type mismatches and a non-empty target.
    assert_eq!(fs.rename_path("/b/g", "/b/e3"), Err(Error::IsADirectory));
    assert_eq!(fs.rename_path("/a/e1", "/b/g"), Err(Error::NotADirectory));
    assert_eq!(fs.rename_path("/a/e1", "/b/full"), Err(Error::NotEmpty));
    assert_eq!(fs.rename_path("/a/missing", "/b/new"), Err(Error::NotFound));

    // A directory over an empty directory in the same parent, then across parents.
    fs.rename_path("/a/e1", "/a/e2").unwrap();
    assert_eq!(links(&mut fs, a), 3);
    fs.rename_path("/a/e2", "/b/e3").unwrap();
    assert_eq!((links(&mut fs, a), links(&mut fs, b)), (2, 4));
    assert_eq!(fs.lookup("/b/e3/..").unwrap(), b);
    // Renaming onto itself changes nothing.
    fs.rename_path("/b/g", "/b/g").unwrap();
    assert_eq!(fs.stats().free_inodes, free_inodes + 3);

    let image = unmount(fs);
    fsck(&image);
    assert_eq!(debugfs_cat(&image, "/b/g"), b"file a/f");
}

#[test]
fn read_ahead_through_the_block_map_and_the_cache() {
    let data = pattern(200 * 1024, 21);
    let image = make_image(1024, 2048, &[("seq", data.clone())], &[]);
    let mut fs = mount_with(image, 512, 4).unwrap();
    let ino = fs.lookup("/seq").unwrap();
    let before = fs.access().cache.stats();
    // The superblock probe before the mount read once, outside the cache.
    let probe_reads = 1;
    assert_eq!(fs.access().cache.device().stats().reads_submitted, before.misses + probe_reads);
    // Read-ahead translates file blocks with the block map and submits a window of them at
    // once (the device queue holds 64), then the reader consumes the window.
    let mut issued = 0;
    let mut buf = vec![0; data.len()];
    for window in (0..200u64).step_by(32) {
        for file_block in window..(window + 32).min(200) {
            if fs.prefetch_file_block(ino, file_block).unwrap() {
                issued += 1;
            }
        }
        let start = window as usize * 1024;
        let end = (start + 32 * 1024).min(data.len());
        assert_eq!(fs.read(ino, start as u64, &mut buf[start..end]).unwrap(), end - start);
    }
    assert!(buf == data);
    // Holes are not fetched; past the end there is nothing mapped.
    assert_eq!(fs.block_map(ino, 200).unwrap(), None);
    assert!(!fs.prefetch_file_block(ino, 500).unwrap());
    let after = fs.access().cache.stats();
    assert_eq!(after.async_reads - before.async_reads, issued);
    // Every data block was fetched by read-ahead: the reader either found it (a prefetch hit)
    // or, for the first block of a window, waited for that same request (a blocking read, no
    // second request). Demand misses are only the block map's indirect block and the like.
    assert_eq!(issued, 200);
    let prefetch_hits = after.prefetch_hits - before.prefetch_hits;
    let waited = (after.blocking_reads - before.blocking_reads) - (after.misses - before.misses);
    assert_eq!(prefetch_hits + waited, 200, "{after:?}");
    assert!(after.misses - before.misses <= 2, "{after:?}");
    let device_reads = fs.access().cache.device().stats().reads_submitted;
    assert_eq!(device_reads, after.misses + after.async_reads + probe_reads, "a block was requested twice");
    for file_block in 0..200 {
        let block = fs.block_map(ino, file_block).unwrap().unwrap();
        assert!(fs.access().cache.is_cached(block));
    }
}

#[test]
fn a_file_past_2_gib_turns_on_large_file() {
    // mke2fs always sets large_file; clear it (ro_compat bit 0x2 at superblock byte 100).
    let mut image = make_image(4096, 4 * 1024, &[], &[]);
    image[1024 + 100] &= !0x02;
    assert!(!String::from_utf8(debugfs(&image, "features")).unwrap().contains("large_file"));
    let mut fs = mount(image);
    assert!(!fs.stats().read_only);
    let ino = fs.create_path("/sparse", 0o644).unwrap();
    fs.truncate(ino, 3 << 30).unwrap();
    fs.write(ino, 3 << 30, b"end").unwrap();
    let image = unmount(fs);
    let features = String::from_utf8(debugfs(&image, "features")).unwrap();
    assert!(features.contains("large_file"), "{features}");
    fsck(&image);
}

#[test]
fn the_resident_block_map_never_reads_and_agrees_with_the_block_map() {
    let data = pattern(100 * 1024, 5);
    let image = make_image(1024, 2048, &[("f", data)], &[]);
    // A cache of 16 blocks: the inode and indirect blocks get evicted by the data.
    let mut fs = mount_with(image, 16, 1).unwrap();
    let ino = fs.lookup("/f").unwrap();
    let mut resident = 0;
    for file_block in 0..100u64 {
        let reads = fs.access().cache.device().stats().reads_submitted;
        let answer = fs.block_map_resident(ino, file_block).unwrap();
        assert_eq!(fs.access().cache.device().stats().reads_submitted, reads, "the resident map issued a read");
        if let Some(mapped) = answer {
            resident += 1;
            assert_eq!(mapped, fs.block_map(ino, file_block).unwrap());
        }
        // Reading through the ordinary map brings the inode and indirect block in again.
        let _ = fs.block_map(ino, file_block).unwrap();
        assert_eq!(fs.block_map_resident(ino, file_block).unwrap(), Some(fs.block_map(ino, file_block).unwrap()));
    }
    assert!(resident > 0);
    assert_eq!(fs.block_map_resident(ino, 5000).unwrap(), Some(None), "past the end is a hole");
    assert_eq!(fs.size_resident(ino).unwrap(), Some(100 * 1024));
}
