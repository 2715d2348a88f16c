//! QEMU's firmware configuration device (fw_cfg): how the runner passes the kernel a command line
//! (`-fw_cfg name=opt/graft/cmdline,string=...`) without rebuilding the disk image.
use alloc::string::String;
use alloc::vec::Vec;

use ::x86_64::instructions::port::Port;

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const SIGNATURE: u16 = 0x0000;
const FILE_DIR: u16 = 0x0019;

/// Longest file we are willing to read: a command line, not a disk image.
const MAX_FILE: u32 = 4096;

fn select(key: u16) {
    // SAFETY: writing the selector register of the fw_cfg device; harmless if absent.
    unsafe { Port::<u16>::new(SELECTOR).write(key) }
}

fn read_bytes(buf: &mut [u8]) {
    let mut data = Port::<u8>::new(DATA);
    for b in buf {
        // SAFETY: reading the data register of the fw_cfg device; reads 0xff... if absent.
        *b = unsafe { data.read() };
    }
}

fn read_be_u32() -> u32 {
    let mut b = [0; 4];
    read_bytes(&mut b);
    u32::from_be_bytes(b)
}

fn present() -> bool {
    select(SIGNATURE);
    let mut sig = [0; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// Reads the named fw_cfg file; `None` if there is no device or no such file.
pub fn read_file(name: &str) -> Option<Vec<u8>> {
    if !present() {
        return None;
    }
    select(FILE_DIR);
    let count = read_be_u32();
    for _ in 0..count.min(4096) {
        let size = read_be_u32();
        let mut sel = [0; 2];
        read_bytes(&mut sel);
        let mut reserved = [0; 2];
        read_bytes(&mut reserved);
        let mut fname = [0u8; 56];
        read_bytes(&mut fname);
        let len = fname.iter().position(|&b| b == 0).unwrap_or(fname.len());
        if &fname[..len] == name.as_bytes() {
            let mut contents = alloc::vec![0; size.min(MAX_FILE) as usize];
            select(u16::from_be_bytes(sel));
            read_bytes(&mut contents);
            return Some(contents);
        }
    }
    None
}

/// The kernel command line passed by the runner, or an empty string.
pub fn cmdline() -> String {
    read_file("opt/graft/cmdline")
        .map(|b| String::from_utf8_lossy(&b).trim_end_matches('\0').into())
        .unwrap_or_default()
}
