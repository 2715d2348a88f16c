//! Copies between the kernel and user memory. Every user pointer is checked to lie in the user
//! half, and the copy itself goes through the fault fix-up, so an unmapped or read-only page
//! gives `BadAddress` instead of a kernel fault.
use alloc::string::String;
use alloc::vec::Vec;

use sysabi::Error;

use crate::arch;

/// Checks that `[addr, addr + len)` lies inside user space.
pub fn check_range(addr: u64, len: u64) -> Result<(), Error> {
    let end = addr.checked_add(len).ok_or(Error::BadAddress)?;
    if addr < sysabi::USER_START || end > sysabi::USER_END {
        return Err(Error::BadAddress);
    }
    Ok(())
}

pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), Error> {
    if dst.is_empty() {
        return Ok(());
    }
    check_range(src, dst.len() as u64)?;
    // SAFETY: the destination is kernel memory we own; the source is checked to be in the user half, and a missing page there is caught by the fix-up.
    unsafe { arch::copy_checked(dst.as_mut_ptr(), src as *const u8, dst.len()) }.map_err(|_| Error::BadAddress)
}

pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Error> {
    if src.is_empty() {
        return Ok(());
    }
    check_range(dst, src.len() as u64)?;
    // SAFETY: the destination is checked to be in the user half (never kernel data); a missing or read-only page (CR0.WP is set) is caught by the fix-up.
    unsafe { arch::copy_checked(dst as *mut u8, src.as_ptr(), src.len()) }.map_err(|_| Error::BadAddress)
}

/// Reads `len` bytes (at most `max`) of user memory.
pub fn read_vec(addr: u64, len: u64, max: u64) -> Result<Vec<u8>, Error> {
    if len > max {
        return Err(Error::InvalidArgument);
    }
    let len = usize::try_from(len).map_err(|_| Error::InvalidArgument)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::NoMemory)?;
    v.resize(len, 0);
    copy_from_user(&mut v, addr)?;
    Ok(v)
}

/// Reads a UTF-8 string of `len` bytes (at most `max`).
pub fn read_str(addr: u64, len: u64, max: u64) -> Result<String, Error> {
    String::from_utf8(read_vec(addr, len, max)?).map_err(|_| Error::InvalidArgument)
}

pub fn read_u32(addr: u64) -> Result<u32, Error> {
    let mut b = [0u8; 4];
    copy_from_user(&mut b, addr)?;
    Ok(u32::from_le_bytes(b))
}
