//! `crashtest`: the write workload of the crash-safety test (init runs it in `crash` mode).
//!
//! First it makes durable files: `/crash/durable-N.bin` (N = 0..8), 20,000 bytes each of the
//! storage test pattern with seed N, each written, `fsync`ed, and its directory `fsync`ed
//! (so that the name is on the disk too), then announced with `crashtest: durable PATH`.
//! Then it churns forever without syncing: creating, writing, renaming and removing files
//! under `/crash/churn/`. `./run.sh test` kills the machine in the middle of the churn, then
//! checks on the host that every announced file reads back intact and that `e2fsck` finds
//! only what ext2 without a journal can lose.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::vec;

use sysabi::open;
use ulib::file::{self, File};
use ulib::{eprintln, println};

pub const DURABLE_FILES: u32 = 8;
pub const DURABLE_BYTES: usize = 20_000;

fn durable(n: u32) -> Result<(), sysabi::Error> {
    let path = format!("/crash/durable-{n}.bin");
    let mut data = vec![0u8; DURABLE_BYTES];
    storage::pattern::fill(n, 0, &mut data);
    let mut f = File::open(&path, open::WRITE | open::CREATE | open::TRUNCATE)?;
    f.write_all(&data)?;
    f.sync_all()?;
    File::open("/crash", open::READ)?.sync_all()?;
    println!("crashtest: durable {path}");
    Ok(())
}

fn main(_args: &[&str]) -> i32 {
    let _ = file::mkdir("/crash");
    let _ = file::mkdir("/crash/churn");
    // A new directory's name lives in its parent, and its own first block holds `.` and `..`:
    // both must reach the disk before the workload relies on them. (A directory killed before
    // its first block was ever written is a loss ext2 without a journal has; e2fsck calls it
    // "directory corrupted". This test does not create one.)
    for dir in ["/", "/crash", "/crash/churn"] {
        if let Err(e) = File::open(dir, open::READ).and_then(|d| d.sync_all()) {
            eprintln!("crashtest: fsync of {dir}: {e}");
            return 1;
        }
    }
    for n in 0..DURABLE_FILES {
        if let Err(e) = durable(n) {
            eprintln!("crashtest: durable file {n}: {e}");
            return 1;
        }
    }
    println!("crashtest: churning until the machine is killed");
    let mut round: u64 = 0;
    // More than the buffer cache holds (1 MiB by default): evictions and the periodic writer
    // keep writes going to the disk while the machine is killed.
    let mut data = vec![0u8; 65536];
    loop {
        let k = round % 32;
        let path = format!("/crash/churn/f{k}");
        storage::pattern::fill(round as u32, 0, &mut data);
        let len = 1024 + (round as usize * 15331) % 64000;
        if let Ok(mut f) = File::open(&path, open::WRITE | open::CREATE | open::TRUNCATE) {
            let _ = f.write_all(&data[..len]);
        }
        if round % 3 == 0 {
            let _ = file::rename(&path, &format!("/crash/churn/g{k}"));
        }
        if round % 5 == 0 {
            let _ = file::unlink(&format!("/crash/churn/g{}", (k + 7) % 32));
        }
        round += 1;
    }
}
ulib::entry!(main);
