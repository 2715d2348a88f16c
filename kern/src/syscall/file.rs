//! File system calls: the console (read, write) and the ramdisk's files.
use alloc::string::String;
use alloc::vec::Vec;

use sysabi::{Error, Sys};

use super::uaccess::{self, copy_to_user, read_str, read_vec};
use super::write_out;
use crate::fs::ramdisk;
use crate::task;

const MAX_PATH: u64 = 256;
/// Most bytes one read or write moves.
const MAX_IO: u64 = 64 * 1024;

pub(super) fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::Write => {
            if a[0] != 1 && a[0] != 2 {
                return Err(Error::InvalidArgument);
            }
            let bytes = read_vec(a[1], a[2].min(MAX_IO), MAX_IO)?;
            crate::kprint!("{}", String::from_utf8_lossy(&bytes));
            Ok(bytes.len() as u64)
        }
        Sys::Read => {
            if a[0] != 0 {
                return Err(Error::InvalidArgument);
            }
            let len = a[2].min(MAX_IO) as usize;
            if len == 0 {
                return Ok(0);
            }
            let mut buf = Vec::new();
            buf.try_reserve_exact(len).map_err(|_| Error::NoMemory)?;
            buf.resize(len, 0);
            // Check the buffer is there and writable before blocking: a bad pointer must not
            // wait for input first. Copying the bytes back unchanged changes nothing.
            uaccess::copy_from_user(&mut buf, a[1])?;
            copy_to_user(a[1], &buf)?;
            let n = task::console_read(&mut buf);
            copy_to_user(a[1], &buf[..n])?;
            Ok(n as u64)
        }
        Sys::FileList => {
            let mut out = Vec::new();
            for name in ramdisk::names() {
                out.try_reserve(name.len() + 1).map_err(|_| Error::NoMemory)?;
                out.extend_from_slice(name.as_bytes());
                out.push(0);
            }
            write_out(a[0], a[1], &out)
        }
        Sys::FileRead => {
            let path = read_str(a[0], a[1], MAX_PATH)?;
            let data = ramdisk::file(&path).ok_or(Error::NotFound)?;
            let offset = a[2].min(data.len() as u64) as usize;
            let n = (data.len() - offset).min(a[4].min(MAX_IO) as usize);
            copy_to_user(a[3], &data[offset..offset + n])?;
            Ok(n as u64)
        }
        _ => Err(Error::NoSys),
    }
}
