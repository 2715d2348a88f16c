//! The read-only boot ramdisk, from which programs are started: listing and reading files.
//! The disk's file system is [`crate::file`].

use crate::{args, sys};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use sysabi::Error;

/// Largest name list accepted; a kernel answering `BufferTooSmall` beyond it is not believed.
const MAX_LIST: usize = 1 << 20;

/// Calls `fill` with buffers of growing size until the answer fits; the bytes written.
pub(crate) fn grow_until_fits(
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, Error>,
) -> Result<Vec<u8>, Error> {
    let mut size = 4096;
    loop {
        let mut buf = vec![0u8; size];
        match fill(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Error::BufferTooSmall) if size < MAX_LIST => size *= 2,
            Err(e) => return Err(e),
        }
    }
}

/// The ramdisk's file names.
pub fn list() -> Result<Vec<String>, Error> {
    let bytes = grow_until_fits(sys::file_list)?;
    Ok(args::split_nul_list(&bytes).into_iter().map(ToString::to_string).collect())
}

/// Reads the whole file at `path`.
pub fn read_file(path: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = sys::file_read(path, out.len() as u64, &mut chunk)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}
