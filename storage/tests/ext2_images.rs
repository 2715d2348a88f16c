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
