//! `fsgrafts`: the file system's graft points on their real paths, with their figures beside
//! the default's.
//!
//! - **Read-ahead** (`fs.compute_ra`): 512 reads of 1 KiB blocks of a 1024-block file, in a
//!   fixed scattered order the program knows (as an index lookup would), with 1 ms of work
//!   after each. First with the kernel's default read-ahead (`/data/ra1.bin`), then with
//!   `readahead_pattern.graft`, into whose data region the program writes its order before
//!   loading it (`/data/ra2.bin`, so that nothing is cached from the first run). Figures:
//!   blocking reads (the buffer cache's counter), median and p90 read latency, total time.
//!   The disk is throttled by QEMU (run.sh: 1000 requests/s). QEMU's throttling bounds the
//!   rate, not the latency: read-ahead hides a read's latency behind the work, so the time
//!   saved is at most the latency per read (the total-time ratio is at most (latency + work) /
//!   work, and not more than 2 when the work is as long as the latency).
//! - **Commit log**: a read-ahead graft that asks for reads (`fs.prefetch`) and then aborts
//!   issues no read at all; a committing one's reads are issued.
//! - **Encryption** (`fs.write_filter`, `fs.read_filter`): with the XTEA filters attached the
//!   program writes `/crypt/secret.txt` and reads back its text; without the read filter it reads
//!   ciphertext of the same length. The host then decrypts the file on the disk image
//!   (`boot check-xtea`). A write filter that aborts fails the write and leaves the file's bytes
//!   unchanged.
//!
//! Prints `test NAME ... ok` lines (the end-to-end runner counts them) and exits 0 only if
//! every check passed, including the read-ahead target: with the graft, blocking reads at most
//! 10 % of the default's.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sysabi::{Error, open};
use ulib::file::{self, File, SeekFrom};
use ulib::graft::{self, LoadError};
use ulib::{eprintln, fs, measure, println, sys};

const BLOCK: u64 = 1024;
/// The read-ahead files (made by run.sh with `boot fill-pattern`): blocks and pattern seed.
const RA_FILE_BLOCKS: u64 = 1024;
const RA_SEED: u32 = 0x0052_4144;
const READS: u64 = 512;
const WORK_NS: u64 = 1_000_000;

/// The program's scattered order: read `i` is of block `(i * 389 + 17) % 1024` (every block at
/// most once, no two neighbours adjacent).
fn order() -> Vec<u64> {
    (0..READS).map(|i| (i * 389 + 17) % RA_FILE_BLOCKS).collect()
}

struct Run {
    blocking_reads: u64,
    async_reads: u64,
    latencies: Vec<u64>,
    total_ns: u64,
    bad_blocks: u64,
}

/// Reads the blocks of `path` in `order`, working `WORK_NS` after each.
fn scattered_reads(path: &str, order: &[u64]) -> Result<Run, Error> {
    let mut f = File::open(path, open::READ)?;
    let before = file::fs_info()?;
    let mut latencies = Vec::with_capacity(order.len());
    let mut buf = vec![0u8; BLOCK as usize];
    let mut bad_blocks = 0;
    let start = sys::clock();
    for &b in order {
        let t0 = sys::clock();
        f.seek(SeekFrom::Start(b * BLOCK))?;
        f.read_exact(&mut buf)?;
        latencies.push(sys::clock() - t0);
        if !block_holds_pattern(b, &buf) {
            bad_blocks += 1;
        }
        // The work between reads: what the program does with the record it looked up.
        let until = sys::clock() + WORK_NS;
        while sys::clock() < until {
            core::hint::spin_loop();
        }
    }
    let total_ns = sys::clock() - start;
    let after = file::fs_info()?;
    Ok(Run {
        blocking_reads: after.cache_blocking_reads - before.cache_blocking_reads,
        async_reads: after.cache_async_reads - before.cache_async_reads,
        latencies,
        total_ns,
        bad_blocks,
    })
}

/// Whether block `b` of a read-ahead file holds its pattern (the same as `boot fill-pattern`:
/// 512-byte sectors of `storage::pattern` with the file's seed).
fn block_holds_pattern(b: u64, data: &[u8]) -> bool {
    storage::pattern::first_mismatch(RA_SEED, b * (BLOCK / 512), data).is_none()
}

fn report(label: &str, r: &Run) {
    let s = measure::summarize(&r.latencies);
    println!(
        "fsgrafts: {label:<8} blocking reads {:>4}  read-ahead requests {:>4}  read latency median {:>6} us  p90 {:>6} us  total {:>5} ms",
        r.blocking_reads,
        r.async_reads,
        s.median / 1000,
        s.p90 / 1000,
        r.total_ns / 1_000_000
    );
}

/// Loads `grafts/readahead_pattern.gb` with the program's order written into its data region
/// (layout in the graft's header: mode u32 @0, depth i32 @4, stride i64 @8, pattern_len i32
/// @16, pos i32 @20, pattern [i64; 1024] @24).
fn load_pattern_graft(order: &[u64]) -> Result<u32, String> {
    let blob = fs::read_file("grafts/readahead_pattern.gb").map_err(|e| alloc::format!("read blob: {e}"))?;
    let mut module = graft_ir::decode(&blob).map_err(|e| alloc::format!("decode: {e}"))?;
    let len = 24 + 8 * order.len();
    if (module.resources.data_size as usize) < len || order.len() > 1024 {
        return Err(alloc::format!("data region of {} bytes is too small for {} blocks", module.resources.data_size, order.len()));
    }
    let data = &mut module.data;
    if data.len() < len {
        data.resize(len, 0);
    }
    data[0..4].copy_from_slice(&1u32.to_le_bytes()); // list mode
    data[4..8].copy_from_slice(&8i32.to_le_bytes()); // depth
    data[16..20].copy_from_slice(&(order.len() as i32).to_le_bytes());
    data[20..24].copy_from_slice(&0i32.to_le_bytes());
    for (i, &b) in order.iter().enumerate() {
        data[24 + 8 * i..32 + 8 * i].copy_from_slice(&(b as i64).to_le_bytes());
    }
    let blob = graft_ir::encode(&module).map_err(|e| alloc::format!("encode: {e}"))?;
    match graft::load(&blob) {
        Ok(id) => Ok(id),
        Err(LoadError::Rejected { log }) => Err(alloc::format!("rejected: {log}")),
        Err(LoadError::Sys(e)) => Err(alloc::format!("graft_load: {e}")),
    }
}

fn load_named(path: &str) -> Result<u32, String> {
    graft::load_file(path).map(|l| l.id).map_err(|e| match e {
        LoadError::Rejected { log } => alloc::format!("{path}: rejected: {log}"),
        LoadError::Sys(e) => alloc::format!("{path}: {e}"),
    })
}

fn readahead_demo() -> Result<(), String> {
    let order = order();
    let default = scattered_reads("/data/ra1.bin", &order).map_err(|e| alloc::format!("default run: {e}"))?;
    let id = load_pattern_graft(&order)?;
    graft::attach(id, "fs.compute_ra", 0).map_err(|e| alloc::format!("attach: {e}"))?;
    let grafted = scattered_reads("/data/ra2.bin", &order).map_err(|e| alloc::format!("grafted run: {e}"));
    let stats = graft::stats(id).unwrap_or_default();
    let _ = graft::detach(id);
    let grafted = grafted?;
    println!(
        "fsgrafts: read-ahead: {READS} reads of 1 KiB blocks of a {RA_FILE_BLOCKS}-block file in a scattered order, {} ms of work after each; every disk throttled by QEMU to 1000 requests/s (run.sh)",
        WORK_NS / 1_000_000
    );
    report("default", &default);
    report("grafted", &grafted);
    let (bw, bh) = measure::ratio(grafted.blocking_reads * 100, default.blocking_reads.max(1));
    let (tw, th) = measure::ratio(default.total_ns, grafted.total_ns.max(1));
    let (lw, lh) = measure::ratio(
        measure::summarize(&default.latencies).median,
        measure::summarize(&grafted.latencies).median.max(1),
    );
    println!(
        "fsgrafts: with the graft: blocking reads {bw}.{bh:02} % of the default's (target: at most 10 %); total time {tw}.{th:02}x lower (target: 2x); median read latency {lw}.{lh:02}x lower"
    );
    println!("fsgrafts: graft {id} fs.compute_ra calls={} commits={} aborts={}", stats.calls, stats.commits, graft::total_aborts(&stats));
    if default.bad_blocks + grafted.bad_blocks > 0 {
        return Err(alloc::format!("{} blocks read back wrong", default.bad_blocks + grafted.bad_blocks));
    }
    if stats.commits == 0 {
        return Err("the graft never committed".into());
    }
    if grafted.blocking_reads * 10 > default.blocking_reads {
        return Err(alloc::format!(
            "blocking reads with the graft {} > 10 % of the default's {}",
            grafted.blocking_reads, default.blocking_reads
        ));
    }
    Ok(())
}

/// Reads block `block` of `path` right after a seek (so the default read-ahead's window is
/// empty); the buffer cache's count of read-ahead requests before and after the read.
fn read_block_after_seek(path: &str, block: u64) -> Result<(u64, u64), Error> {
    let mut f = File::open(path, open::READ)?;
    let mut buf = [0u8; BLOCK as usize];
    f.seek(SeekFrom::Start(block * BLOCK))?;
    let before = file::fs_info()?.cache_async_reads;
    f.read_exact(&mut buf)?;
    Ok((before, file::fs_info()?.cache_async_reads))
}

/// An aborted read-ahead graft that asked for reads issued none; a committing one did.
fn prefetch_happens_only_at_commit() -> Result<(), String> {
    let path = "/data/ra3.bin";
    let id = load_named("grafts/hostile/ra_prefetch_then_abort.gb")?;
    graft::attach(id, "fs.compute_ra", 0).map_err(|e| alloc::format!("attach: {e}"))?;
    // A read after a seek: the default read-ahead's window is empty, so any read-ahead request
    // would be the graft's.
    let r = read_block_after_seek(path, 40);
    let stats = graft::stats(id).unwrap_or_default();
    let _ = graft::detach(id);
    let (before, after) = r.map_err(|e| alloc::format!("{path}: {e}"))?;
    if graft::total_aborts(&stats) == 0 {
        return Err("the graft did not abort".into());
    }
    if after != before {
        return Err(alloc::format!("an aborted graft's fs.prefetch issued {} reads", after - before));
    }
    // The same read with a graft that commits its read-ahead: the requests are issued.
    let order: Vec<u64> = [40u64, 10, 11, 12].to_vec();
    let id = load_pattern_graft(&order)?;
    graft::attach(id, "fs.compute_ra", 0).map_err(|e| alloc::format!("attach: {e}"))?;
    let r = read_block_after_seek(path, 40);
    let _ = graft::detach(id);
    let (before, after) = r.map_err(|e| alloc::format!("{path}: {e}"))?;
    if after - before != 3 {
        return Err(alloc::format!("a committing graft's 3 blocks became {} read-ahead requests", after - before));
    }
    Ok(())
}

/// The text `/crypt/secret.txt` holds (the host regenerates it to check the decryption).
fn secret_text() -> Vec<u8> {
    let mut t = Vec::new();
    for i in 0..100 {
        t.extend_from_slice(alloc::format!("line {i:04}: attack at dawn\n").as_bytes());
    }
    t
}

fn encryption() -> Result<(), String> {
    let _ = file::mkdir("/crypt");
    let w = load_named("grafts/xtea_write_filter.gb")?;
    let r = load_named("grafts/xtea_read_filter.gb")?;
    graft::attach(w, "fs.write_filter", 0).map_err(|e| alloc::format!("attach write filter: {e}"))?;
    graft::attach(r, "fs.read_filter", 0).map_err(|e| alloc::format!("attach read filter: {e}"))?;
    let text = secret_text();
    let result = (|| -> Result<(), String> {
        let e = |what: &str, err: Error| alloc::format!("{what}: {err}");
        let mut f = File::open("/crypt/secret.txt", open::WRITE | open::CREATE | open::TRUNCATE).map_err(|x| e("create", x))?;
        // In pieces at odd offsets: the counter mode follows the file offset.
        for piece in text.chunks(777) {
            f.write_all(piece).map_err(|x| e("write", x))?;
        }
        f.sync_all().map_err(|x| e("fsync", x))?;
        drop(f);
        let back = file::read_file("/crypt/secret.txt").map_err(|x| e("read back", x))?;
        if back != text {
            return Err("reading back through the read filter did not give the text".into());
        }
        graft::detach(r).map_err(|x| e("detach read filter", x))?;
        let raw = file::read_file("/crypt/secret.txt").map_err(|x| e("raw read", x))?;
        if raw.len() != text.len() {
            return Err(alloc::format!("ciphertext of {} bytes for {} bytes of text", raw.len(), text.len()));
        }
        let same = raw.iter().zip(&text).filter(|(a, b)| a == b).count();
        if same * 10 > text.len() {
            return Err(alloc::format!("{same} of {} bytes on the disk are the text's", text.len()));
        }
        println!("fsgrafts: encryption: {} bytes written through fs.write_filter read back as text; without fs.read_filter they read as ciphertext ({same} bytes equal by chance)", text.len());
        Ok(())
    })();
    let _ = graft::detach(w);
    let _ = graft::detach(r);
    result?;
    file::sync().map_err(|e| alloc::format!("sync: {e}"))
}

/// A write filter that aborts fails the write and the file keeps its bytes.
fn failing_write_filter_changes_nothing() -> Result<(), String> {
    let _ = file::mkdir("/crypt");
    let path = "/crypt/keep.txt";
    let original = b"original contents: no filter wrote this\n";
    file::write_file(path, original).map_err(|e| alloc::format!("write {path}: {e}"))?;
    for hostile in ["grafts/hostile/filter_endless.gb", "grafts/hostile/filter_out_of_bounds.gb"] {
        let id = load_named(hostile)?;
        graft::attach(id, "fs.write_filter", 0).map_err(|e| alloc::format!("attach: {e}"))?;
        let r = File::open(path, open::WRITE).and_then(|mut f| f.write(b"OVERWRITTEN"));
        let _ = graft::detach(id);
        match r {
            Err(Error::IoError) => {}
            other => return Err(alloc::format!("{hostile}: write answered {other:?}, expected IoError")),
        }
        let now = file::read_file(path).map_err(|e| alloc::format!("read {path}: {e}"))?;
        if now != original {
            return Err(alloc::format!("{hostile}: the file changed under an aborted write filter"));
        }
    }
    Ok(())
}

fn main(_args: &[&str]) -> i32 {
    if let Err(Error::NoFileSystem) = file::fs_info() {
        println!("fsgrafts: no file system");
        return 1;
    }
    let tests: [(&str, fn() -> Result<(), String>); 4] = [
        ("prefetch_happens_only_at_commit", prefetch_happens_only_at_commit),
        ("failing_write_filter_changes_nothing", failing_write_filter_changes_nothing),
        ("encryption_round_trip", encryption),
        ("readahead_demo", readahead_demo),
    ];
    let mut failed = 0;
    for (name, t) in tests {
        match t() {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                failed += 1;
                eprintln!("test {name} ... FAILED: {e}");
            }
        }
    }
    println!("fsgrafts: {} passed, {failed} failed", tests.len() - failed);
    i32::from(failed > 0)
}
ulib::entry!(main);
