//! The boot ramdisk: a tar archive (ustar) loaded by the bootloader, indexed once at boot.
use alloc::string::String;
use alloc::vec::Vec;

use spin::Once;
use tar_no_std::TarArchiveRef;

struct Entry {
    name: String,
    data: &'static [u8],
}

static FILES: Once<Vec<Entry>> = Once::new();

#[derive(Debug)]
pub enum RamdiskError {
    Corrupt,
}

/// Indexes the archive at `[addr, addr + len)` (mapped by the bootloader for the kernel's life).
pub fn init(addr: u64, len: u64) -> Result<usize, RamdiskError> {
    // SAFETY: the bootloader mapped the ramdisk there, read-only data that lives forever.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) };
    let archive = TarArchiveRef::new(bytes).map_err(|_| RamdiskError::Corrupt)?;
    let mut files = Vec::new();
    for entry in archive.entries() {
        let filename = entry.filename();
        let Ok(name) = filename.as_str() else { continue };
        let name = name.trim_start_matches("./").trim_start_matches('/');
        if name.is_empty() || name.ends_with('/') {
            continue;
        }
        // The entry borrows `archive`, which borrows `bytes`: find the data inside `bytes` to
        // keep a 'static slice.
        let data = entry.data();
        let start = data.as_ptr() as usize - bytes.as_ptr() as usize;
        files.push(Entry { name: String::from(name), data: &bytes[start..start + data.len()] });
    }
    let n = files.len();
    FILES.call_once(|| files);
    Ok(n)
}

/// The contents of file `path` (a leading `/` is ignored).
pub fn file(path: &str) -> Option<&'static [u8]> {
    let path = path.trim_start_matches('/');
    FILES.get()?.iter().find(|e| e.name == path).map(|e| e.data)
}

/// Every file name, in archive order.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.get().into_iter().flat_map(|f| f.iter().map(|e| e.name.as_str()))
}
