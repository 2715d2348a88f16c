//! The storage benchmark of `./run.sh bench`: a sequential read of a 16 MiB file
//! (`/data/big.bin`, made by run.sh) through the file system and the buffer cache, first from
//! the disk (with the default read-ahead issuing its window ahead of the reader), then again
//! from the cache (the bench boots with a cache larger than the file). Under `-icount` the
//! time-stamp counter counts guest instructions: figures are instructions, and MB/s of guest
//! time at one instruction per nanosecond.
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::disk::with_fs;
use super::readahead::ReadAhead;
use crate::time::rdtsc;

const PATH: &str = "/data/big.bin";
const CHUNK: usize = 64 * 1024;

struct Pass {
    instructions: u64,
    bytes: u64,
    blocking_reads: u64,
    async_reads: u64,
    hits: u64,
}

fn pass(read_ahead: bool) -> Result<Pass, sysabi::Error> {
    with_fs(|fs| {
        let ino = fs.lookup(PATH).map_err(super::disk::error)?;
        let size = fs.stat(ino).map_err(super::disk::error)?.size;
        let bs = fs.block_size() as u64;
        let file_blocks = size.div_ceil(bs);
        let before = fs.access().cache.stats();
        let mut buf = vec![0u8; CHUNK];
        let mut ra = ReadAhead::default();
        let mut offset = 0u64;
        let start = rdtsc();
        while offset < size {
            let n = fs.read(ino, offset, &mut buf).map_err(super::disk::error)?;
            if n == 0 {
                break;
            }
            if read_ahead {
                let window = ra.after_read(offset / bs, (offset + n as u64 - 1) / bs, file_blocks);
                for b in window {
                    let _ = fs.prefetch_file_block(ino, b);
                }
            }
            offset += n as u64;
            fs.access_mut().cache.process_completions(|_| {});
        }
        let instructions = rdtsc() - start;
        let after = fs.access().cache.stats();
        Ok(Pass {
            instructions,
            bytes: offset,
            blocking_reads: after.blocking_reads - before.blocking_reads,
            async_reads: after.async_reads - before.async_reads,
            hits: after.hits - before.hits,
        })
    })
}

fn line(what: &str, p: &Pass) -> String {
    // bytes per instruction * 1e9 instructions per second / 1e6 bytes per MB.
    let mb_s = p.bytes.saturating_mul(1000) / p.instructions.max(1);
    alloc::format!(
        "{what:<24} {:>14} instructions {:>6} MB/s of guest time  blocking reads {:>5}  read-ahead requests {:>5}  cache hits {:>6}",
        p.instructions,
        mb_s,
        p.blocking_reads,
        p.async_reads,
        p.hits
    )
}

/// The benchmark's lines, or why it could not run.
pub fn lines() -> Vec<String> {
    let cold = match pass(true) {
        Ok(p) => p,
        Err(e) => return vec![alloc::format!("sequential read of {PATH}: {e} (./run.sh bench attaches build/fs.img)")],
    };
    let mut out = vec![alloc::format!("sequential read of {PATH}, {} KiB, in {} KiB reads:", cold.bytes / 1024, CHUNK / 1024)];
    out.push(line("  from the disk", &cold));
    match pass(false) {
        Ok(warm) => out.push(line("  from the cache", &warm)),
        Err(e) => out.push(alloc::format!("  from the cache: {e}")),
    }
    out
}
