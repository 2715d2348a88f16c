//! Damaged images: every operation returns an error or a result, never panics, never hangs.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use storage::ext2::{Error, Location, ROOT_INODE};

const ITERATIONS: usize = 400;

fn small_image() -> Vec<u8> {
    small_image_of(1024)
}

fn small_image_of(block_size: u32) -> Vec<u8> {
    make_image(
        block_size,
        2048 * u64::from(block_size) / 1024,
        &[
            ("a.txt", b"alpha".to_vec()),
            ("dir/b.bin", Rng(3).bytes(40 * 1024)),
            ("dir/c.txt", b"gamma".to_vec()),
            ("dir/deeper/d", b"delta".to_vec()),
        ],
        &[],
    )
}

/// Runs a spread of operations; only panics and hangs fail. Returns whether the image mounted
/// and how many operations reported corruption.
fn exercise(image: Vec<u8>) -> (bool, usize) {
    let Ok(mut fs) = mount_with(image, 32, 1) else { return (false, 0) };
    let mut corrupt = 0;
    let mut note = |r: Result<(), Error>| {
        if matches!(r, Err(Error::Corrupt { .. })) {
            corrupt += 1;
        }
    };
    let mut stack = vec![(ROOT_INODE, 0)];
    let mut seen = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match fs.readdir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                note(Err(e));
                continue;
            }
        };
        for e in entries {
            seen += 1;
            if seen > 200 || e.name == b"." || e.name == b".." {
                continue;
            }
            if let Ok(st) = fs.stat(e.ino) {
                note(fs.read(e.ino, 0, &mut buf).map(|_| ()));
                let _ = fs.read(e.ino, st.size / 2, &mut buf);
                let _ = fs.block_map(e.ino, 12);
                if depth < 4 {
                    stack.push((e.ino, depth + 1));
                }
            }
        }
    }
    for path in ["/a.txt", "/dir/b.bin", "/dir/deeper/d", "/dir/../a.txt"] {
        match fs.lookup(path) {
            Ok(ino) => {
                note(fs.read(ino, 0, &mut buf).map(|_| ()));
                note(fs.write(ino, 100, b"overwrite").map(|_| ()));
                note(fs.fsync(ino));
            }
            Err(e) => note(Err(e)),
        }
    }
    note(fs.create_path("/new", 0o644).and_then(|ino| fs.write(ino, 0, &[7; 5000])).map(|_| ()));
    note(fs.mkdir_path("/dir/newdir", 0o755).map(|_| ()));
    note(fs.rename_path("/dir/c.txt", "/c-moved"));
    note(fs.lookup("/dir/b.bin").and_then(|ino| fs.truncate(ino, 13 * 1024)));
    note(fs.unlink_path("/a.txt"));
    note(fs.rmdir_path("/dir/deeper"));
    note(fs.sync());
    (true, corrupt)
}

#[test]
fn bad_magic_is_a_named_error() {
    let mut image = small_image();
    image[1024 + 56] ^= 0xFF;
    assert_eq!(
        mount_with(image, 32, 0).err(),
        Some(Error::Corrupt { what: "bad magic number", at: Location::Superblock })
    );
}

#[test]
fn huge_block_count_is_a_named_error() {
    let mut image = small_image();
    image[1024 + 4..1024 + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    assert!(matches!(mount_with(image.clone(), 32, 0), Err(Error::Corrupt { at: Location::Superblock, .. })));
    // Huge inodes per group, and a group descriptor pointing past the disk.
    let mut image2 = image.clone();
    image2[1024 + 4..1024 + 8].copy_from_slice(&2048u32.to_le_bytes());
    image2[1024 + 40..1024 + 44].copy_from_slice(&0x0100_0000u32.to_le_bytes());
    assert!(matches!(mount_with(image2, 32, 0), Err(Error::Corrupt { .. })));
    let mut image3 = small_image();
    image3[2048 + 8..2048 + 12].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
    assert!(matches!(mount_with(image3, 32, 0), Err(Error::Corrupt { at: Location::Group(0), .. })));
}

#[test]
fn bad_rec_len_is_a_named_error() {
    let image = small_image();
    let mut fs = mount(image.clone());
    let root_block = fs.block_map(ROOT_INODE, 0).unwrap().unwrap() as usize;
    for bad in [0u16, 3, 6, 2000, 13] {
        let mut damaged = image.clone();
        // The first entry is "."; its rec_len is at byte 4.
        damaged[root_block * 1024 + 4..root_block * 1024 + 6].copy_from_slice(&bad.to_le_bytes());
        let mut fs = mount(damaged);
        let err = fs.readdir(ROOT_INODE).unwrap_err();
        assert!(matches!(err, Error::Corrupt { at: Location::Block(b), .. } if b == root_block as u64), "{err:?}");
        assert!(matches!(fs.lookup("/a.txt"), Err(Error::Corrupt { .. })));
        assert!(matches!(fs.create_path("/x", 0o644), Err(Error::Corrupt { .. })));
    }
}

#[test]
fn directory_entry_with_an_inode_out_of_range() {
    let image = small_image();
    let root_block = mount(image.clone()).block_map(ROOT_INODE, 0).unwrap().unwrap() as usize;
    let mut damaged = image;
    // The third entry of the root (after "." of 12 bytes and ".." of 12 bytes).
    damaged[root_block * 1024 + 24..root_block * 1024 + 28].copy_from_slice(&0x7FFF_0000u32.to_le_bytes());
    let mut fs = mount(damaged);
    assert!(matches!(fs.readdir(ROOT_INODE), Err(Error::Corrupt { .. })));
    assert!(matches!(fs.stat(0x7FFF_0000), Err(Error::Corrupt { at: Location::Inode(0x7FFF_0000), .. })));
}

/// The single-indirect block of `path`, from debugfs's `stat`.
fn indirect_block(image: &[u8], path: &str) -> usize {
    let stat = String::from_utf8(debugfs(image, &format!("stat {path}"))).unwrap();
    let at = stat.find("(IND):").expect("file has an indirect block") + 6;
    stat[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn indirect_block_pointing_to_itself() {
    let image = small_image();
    let ind = indirect_block(&image, "/dir/b.bin");
    let mut damaged = image;
    damaged[ind * 1024..ind * 1024 + 4].copy_from_slice(&(ind as u32).to_le_bytes());
    let mut fs = mount(damaged.clone());
    let ino = fs.lookup("/dir/b.bin").unwrap();
    // Reading terminates (the walk has a fixed depth); the map now names the indirect block.
    let mut buf = vec![0; 64 * 1024];
    assert!(fs.read(ino, 0, &mut buf).is_ok());
    assert_eq!(fs.block_map(ino, 12).unwrap(), Some(ind as u64));
    // Freeing it meets the same block twice: a named error, not a double free.
    let err = fs.unlink_path("/dir/b.bin").unwrap_err();
    assert_eq!(err, Error::Corrupt { what: "block freed twice (shared or cyclic block pointers)", at: Location::Block(ind as u64) });
    // Same through truncate and fsync (whose block walk is bounded by i_blocks).
    let mut fs = mount(damaged);
    assert!(matches!(fs.truncate(ino, 0), Err(Error::Corrupt { .. })));
}

#[test]
fn double_indirect_cycle_is_bounded() {
    // A file large enough for a double-indirect block, whose first entry points back at itself.
    let image = make_image(1024, 2048, &[("big", Rng(9).bytes(300 * 1024))], &[]);
    let stat = String::from_utf8(debugfs(&image, "stat /big")).unwrap();
    let at = stat.find("(DIND):").unwrap() + 7;
    let dind: usize = stat[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
    let mut damaged = image;
    damaged[dind * 1024..dind * 1024 + 4].copy_from_slice(&(dind as u32).to_le_bytes());
    let mut fs = mount(damaged);
    let ino = fs.lookup("/big").unwrap();
    let mut buf = vec![0; 300 * 1024];
    assert!(fs.read(ino, 0, &mut buf).is_ok());
    assert!(matches!(fs.fsync(ino), Ok(()) | Err(Error::Corrupt { .. })));
    assert!(matches!(fs.unlink_path("/big"), Err(Error::Corrupt { .. })));
}

#[test]
fn random_metadata_damage_never_panics_or_hangs_1k() {
    random_metadata_damage(1024, 0x5eed_1234_abcd_0001);
}

#[test]
fn random_metadata_damage_never_panics_or_hangs_4k() {
    random_metadata_damage(4096, 0x5eed_4444_abcd_0004);
}

/// Flips 1 to 4 random bytes of the metadata (superblock, descriptors, bitmaps and inode table
/// of group 0, the entries of every directory, an indirect block) and runs `exercise` on each.
fn random_metadata_damage(block_size: usize, seed: u64) {
    let bs = block_size;
    let image = small_image_of(bs as u32);
    let gdt = if bs == 1024 { 2048 } else { bs };
    let table = u32::from_le_bytes(image[gdt + 8..gdt + 12].try_into().unwrap()) as usize;
    let inodes_per_group = u32::from_le_bytes(image[1024 + 40..1024 + 44].try_into().unwrap()) as usize;
    let inode_size = u16::from_le_bytes(image[1024 + 88..1024 + 90].try_into().unwrap()) as usize;
    let block_bitmap = u32::from_le_bytes(image[gdt..gdt + 4].try_into().unwrap()) as usize;
    let inode_bitmap = u32::from_le_bytes(image[gdt + 4..gdt + 8].try_into().unwrap()) as usize;
    let used_inode_bytes = 16 * inode_size; // the inodes in use are the first few
    // Where the live metadata is: the rest of each block is padding that nothing reads.
    let mut regions: Vec<(usize, usize)> = vec![
        (1024, 1024 + 264),
        (gdt, gdt + 32),
        (block_bitmap * bs, block_bitmap * bs + 64),
        (inode_bitmap * bs, inode_bitmap * bs + 8),
        (table * bs, table * bs + used_inode_bytes),
    ];
    let mut fs = mount(image.clone());
    for path in ["/", "/dir", "/dir/deeper", "/lost+found"] {
        let ino = fs.lookup(path).unwrap();
        let block = fs.block_map(ino, 0).unwrap().unwrap() as usize;
        regions.push((block * bs, block * bs + 160));
    }
    if let Some(ind) = (bs == 1024).then(|| indirect_block(&image, "/dir/b.bin")) {
        regions.push((ind * bs, ind * bs + bs));
    }
    assert!(inodes_per_group * inode_size >= used_inode_bytes);

    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let (mut mounted, mut corrupt) = (0, 0);
        for _ in 0..ITERATIONS {
            let mut damaged = image.clone();
            for _ in 0..1 + rng.below(4) {
                let (start, end) = regions[rng.below(regions.len() as u64) as usize];
                let at = start + rng.below((end - start) as u64) as usize;
                damaged[at] ^= 1 + rng.below(255) as u8;
            }
            let (m, c) = exercise(damaged);
            mounted += usize::from(m);
            corrupt += c;
        }
        done_tx.send((mounted, corrupt)).unwrap();
    });
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok((mounted, corrupt)) => {
            worker.join().unwrap();
            // The damage must have reached past the mount checks and been noticed there.
            assert!(mounted > ITERATIONS / 3, "only {mounted} of {ITERATIONS} damaged images mounted");
            assert!(corrupt > ITERATIONS / 8, "only {corrupt} operations noticed the damage");
            eprintln!("{mounted} of {ITERATIONS} damaged images mounted; {corrupt} operations reported corruption");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("an operation on a damaged image did not finish"),
        // The worker panicked: join re-raises its panic with the message.
        Err(mpsc::RecvTimeoutError::Disconnected) => worker.join().unwrap(),
    }
}
