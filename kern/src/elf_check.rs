//! Structural checks of an ELF image before the parser walks it: the parser indexes its tables
//! without bounds checks, so a truncated or crafted file (a user can put any file into the
//! ramdisk) must be refused here, never reach a slice out of range.

/// Size of the ELF64 file header and of one program header.
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfShapeError {
    TooShort,
    NotElf64,
    /// The program-header table does not lie inside the file, or its entries have the wrong size.
    BadProgramHeaders { offset: u64, count: u16, entry_size: u16 },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Checks that `image` is a little-endian ELF64 file whose program-header table lies inside it.
pub fn check(image: &[u8]) -> Result<(), ElfShapeError> {
    if image.len() < EHDR_SIZE {
        return Err(ElfShapeError::TooShort);
    }
    // Magic, class 2 (64-bit), data 1 (little-endian).
    if image[..4] != [0x7f, b'E', b'L', b'F'] || image[4] != 2 || image[5] != 1 {
        return Err(ElfShapeError::NotElf64);
    }
    let offset = u64_at(image, 32);
    let entry_size = u16_at(image, 54);
    let count = u16_at(image, 56);
    let bad = ElfShapeError::BadProgramHeaders { offset, count, entry_size };
    if usize::from(entry_size) != PHDR_SIZE || count == 0 {
        return Err(bad);
    }
    let end = offset.checked_add(u64::from(count) * PHDR_SIZE as u64).ok_or(bad)?;
    if offset < EHDR_SIZE as u64 || end > image.len() as u64 {
        return Err(bad);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ph_offset: u64, ph_count: u16, ph_size: u16, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        b[32..40].copy_from_slice(&ph_offset.to_le_bytes());
        b[54..56].copy_from_slice(&ph_size.to_le_bytes());
        b[56..58].copy_from_slice(&ph_count.to_le_bytes());
        b
    }

    #[test]
    fn a_table_inside_the_file_passes() {
        assert_eq!(check(&header(64, 2, 56, 64 + 112)), Ok(()));
    }

    #[test]
    fn crafted_tables_are_refused() {
        assert_eq!(check(&[0x7f, b'E']), Err(ElfShapeError::TooShort));
        assert_eq!(check(&[0u8; 64]), Err(ElfShapeError::NotElf64));
        // Past the end, wrapping around, wrong entry size, inside the file header.
        assert!(check(&header(64, 3, 56, 64 + 112)).is_err());
        assert!(check(&header(u64::MAX - 10, 1, 56, 200)).is_err());
        assert!(check(&header(64, 1, 32, 200)).is_err());
        assert!(check(&header(8, 1, 56, 200)).is_err());
        assert!(check(&header(64, 0, 56, 200)).is_err());
    }
}
