//! A recognisable pattern for disk sectors: the kernel's disk tests write it and read it back,
//! and the host checks, byte for byte, what reached the disk image. One definition for both.

/// Fills `out` (one sector's bytes, or several) with the pattern of `seed` starting at sector
/// `sector`: every byte depends on the seed, the sector and its offset, so a sector written
/// to the wrong place, shifted, or half-written does not match.
pub fn fill(seed: u32, sector: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let s = sector + (i / crate::block::SECTOR_SIZE) as u64;
        let off = (i % crate::block::SECTOR_SIZE) as u64;
        let x = (u64::from(seed) << 32 | s).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ off.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        *b = (x >> 56) as u8 ^ off as u8;
    }
}

/// Whether `data` holds the pattern of `seed` from sector `sector` on; the first sector that
/// does not, if any.
pub fn first_mismatch(seed: u32, sector: u64, data: &[u8]) -> Option<u64> {
    let mut expect = [0u8; crate::block::SECTOR_SIZE];
    for (k, chunk) in data.chunks(crate::block::SECTOR_SIZE).enumerate() {
        fill(seed, sector + k as u64, &mut expect);
        if chunk != &expect[..chunk.len()] {
            return Some(sector + k as u64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_tells_sectors_and_seeds_apart() {
        let mut a = [0u8; 1024];
        fill(7, 10, &mut a);
        assert_eq!(first_mismatch(7, 10, &a), None);
        assert_eq!(first_mismatch(7, 11, &a), Some(11));
        assert_eq!(first_mismatch(8, 10, &a), Some(10));
        let mut b = [0u8; 512];
        fill(7, 11, &mut b);
        assert_eq!(&a[512..], &b[..], "filling two sectors at once equals filling each");
        a[700] ^= 1;
        assert_eq!(first_mismatch(7, 10, &a), Some(11));
    }
}
