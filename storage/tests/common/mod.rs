//! Shared test plumbing: images made by the real `mke2fs`, mounted over a RamDisk through the
//! buffer cache, checked afterwards with `e2fsck -fn` and read back with `debugfs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use storage::block::RamDisk;
use storage::cache::{BlockCache, CachedBlocks, PollingWaiter};
use storage::ext2::{self, Ext2};

pub type Fs = Ext2<CachedBlocks<RamDisk, PollingWaiter>>;

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("storage-test-{}-{n}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes an ext2 image of `size_kib` KiB with `mke2fs -d`, from `files` (path, contents; a path
/// ending in '/' is a directory). `extra` are more mke2fs arguments.
pub fn make_image(block_size: u32, size_kib: u64, files: &[(&str, Vec<u8>)], extra: &[&str]) -> Vec<u8> {
    let tmp = TempDir::new("mkfs");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    for (path, contents) in files {
        let target = root.join(path.trim_start_matches('/'));
        if path.ends_with('/') {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, contents).unwrap();
        }
    }
    let image = tmp.path().join("fs.img");
    std::fs::File::create(&image).unwrap().set_len(size_kib * 1024).unwrap();
    let out = Command::new("/usr/sbin/mke2fs")
        .args(["-q", "-t", "ext2", "-b", &block_size.to_string(), "-d"])
        .arg(&root)
        .args(extra)
        .arg("-F")
        .arg(&image)
        .env("MKE2FS_CONFIG", "/etc/mke2fs.conf")
        .output()
        .unwrap();
    assert!(out.status.success(), "mke2fs failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&image).unwrap()
}

/// Mounts `image` through a cache of `capacity` blocks; the disk completes requests after
/// `delay` polls.
pub fn mount_with(image: Vec<u8>, capacity: usize, delay: u32) -> Result<Fs, ext2::Error> {
    let mut disk = RamDisk::from_bytes(image).with_completion_delay(delay);
    let block_size = ext2::probe_block_size(&mut disk, 1000)?;
    let cache = BlockCache::new(disk, block_size, capacity)?;
    Ext2::mount(CachedBlocks::new(cache, PollingWaiter::default()))
}

pub fn mount(image: Vec<u8>) -> Fs {
    mount_with(image, 512, 1).unwrap()
}

/// Syncs and returns the disk image.
pub fn unmount(fs: Fs) -> Vec<u8> {
    fs.unmount().unwrap().into_cache().into_device().into_bytes()
}

/// Runs `e2fsck -fn` on the image and panics with its report unless it is clean.
pub fn fsck(image: &[u8]) {
    let tmp = TempDir::new("fsck");
    let path = tmp.path().join("fs.img");
    std::fs::write(&path, image).unwrap();
    let out = Command::new("/usr/sbin/e2fsck").arg("-fn").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `e2fsck -fyD`: rebuilds every directory, with an htree index where the image has dir_index.
pub fn index_directories(image: &[u8]) -> Vec<u8> {
    let tmp = TempDir::new("index");
    let path = tmp.path().join("fs.img");
    std::fs::write(&path, image).unwrap();
    let out = Command::new("/usr/sbin/e2fsck").arg("-fyD").arg(&path).output().unwrap();
    // Exit code 1: "file system was modified", which is the point.
    assert!(matches!(out.status.code(), Some(0 | 1)), "e2fsck -fyD failed: {}", String::from_utf8_lossy(&out.stdout));
    std::fs::read(&path).unwrap()
}

/// `debugfs -R 'cat PATH'`: the file's bytes as the host tools read them.
pub fn debugfs_cat(image: &[u8], path: &str) -> Vec<u8> {
    debugfs(image, &format!("cat {path}"))
}

pub fn debugfs(image: &[u8], request: &str) -> Vec<u8> {
    let tmp = TempDir::new("debugfs");
    let file = tmp.path().join("fs.img");
    std::fs::write(&file, image).unwrap();
    let out = Command::new("/usr/sbin/debugfs").arg("-R").arg(request).arg(&file).output().unwrap();
    assert!(out.status.success(), "debugfs failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Reads a whole file through the file system.
pub fn read_all(fs: &mut Fs, ino: u32) -> Vec<u8> {
    let size = fs.stat(ino).unwrap().size as usize;
    let mut buf = vec![0; size];
    let n = fs.read(ino, 0, &mut buf).unwrap();
    assert_eq!(n, size);
    buf
}
