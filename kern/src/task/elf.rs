//! Loading user programs: static, non-PIE x86_64 ELF executables (what `user/` builds).
use core::fmt;

use xmas_elf::ElfFile;
use xmas_elf::header::{Class, Machine, Type};
use xmas_elf::program::Type as SegmentType;

use crate::memory::PAGE_SIZE;
use crate::memory::space::{AddressSpace, UserRights};

/// Programs live below this; above it are the mappings of `map`, thread stacks and the stack.
pub const IMAGE_END: u64 = 0x0000_1000_0000_0000;
/// Largest total size of a program's segments.
pub const MAX_IMAGE: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    Parse(&'static str),
    NotExecutable(&'static str),
    BadSegment { vaddr: u64, memsz: u64 },
    TooLarge(u64),
    NoMemory,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ElfError::Parse(e) => write!(f, "not an ELF file: {e}"),
            ElfError::NotExecutable(why) => write!(f, "not a program this kernel runs: {why}"),
            ElfError::BadSegment { vaddr, memsz } => write!(f, "segment at {vaddr:#x} (+{memsz:#x}) is outside user space or the file"),
            ElfError::TooLarge(n) => write!(f, "segments total {n} bytes, more than {MAX_IMAGE}"),
            ElfError::NoMemory => write!(f, "out of memory"),
        }
    }
}

/// Maps the program's segments into `space` and returns its entry point.
pub fn load(space: &mut AddressSpace, image: &[u8]) -> Result<u64, ElfError> {
    // The parser trusts the header's table offsets: check them first.
    crate::elf_check::check(image).map_err(|_| ElfError::Parse("malformed ELF header or program-header table"))?;
    let elf = ElfFile::new(image).map_err(ElfError::Parse)?;
    let h = &elf.header;
    if h.pt1.class() != Class::SixtyFour {
        return Err(ElfError::NotExecutable("not 64-bit"));
    }
    if h.pt2.machine().as_machine() != Machine::X86_64 {
        return Err(ElfError::NotExecutable("not x86_64"));
    }
    if h.pt2.type_().as_type() != Type::Executable {
        return Err(ElfError::NotExecutable("not a static executable (ET_EXEC)"));
    }
    let mut total = 0u64;
    for ph in elf.program_iter() {
        match ph.get_type() {
            Ok(SegmentType::Load) => {}
            Ok(SegmentType::Interp) | Ok(SegmentType::Dynamic) => {
                return Err(ElfError::NotExecutable("dynamically linked"));
            }
            _ => continue,
        }
        let (vaddr, memsz, filesz, offset) = (ph.virtual_addr(), ph.mem_size(), ph.file_size(), ph.offset());
        let bad = ElfError::BadSegment { vaddr, memsz };
        let end = vaddr.checked_add(memsz).ok_or(bad.clone())?;
        let file_end = offset.checked_add(filesz).ok_or(bad.clone())?;
        if vaddr < sysabi::USER_START || end > IMAGE_END || filesz > memsz || file_end > image.len() as u64 {
            return Err(bad);
        }
        total += memsz;
        if total > MAX_IMAGE {
            return Err(ElfError::TooLarge(total));
        }
        let flags = ph.flags();
        let rights = UserRights { write: flags.is_write(), exec: flags.is_execute() };
        let mut page = vaddr & !(PAGE_SIZE - 1);
        while page < end {
            space.map_page(page, rights).map_err(|_| ElfError::NoMemory)?;
            page += PAGE_SIZE;
        }
        space
            .write(vaddr, &image[offset as usize..file_end as usize])
            .map_err(|_| ElfError::NoMemory)?;
    }
    let entry = h.pt2.entry_point();
    if !(sysabi::USER_START..IMAGE_END).contains(&entry) || !space.is_mapped(entry) {
        return Err(ElfError::NotExecutable("entry point outside the program"));
    }
    Ok(entry)
}
