//! On-disk structures of ext2 revision 0/1: superblock, group descriptor, inode. Each keeps its raw
//! bytes so that fields this crate does not interpret are written back unchanged.
//!
//! The byte helpers never panic: a read outside the buffer gives 0 and a write outside it is
//! dropped. Callers check disk-derived offsets before using them.

use alloc::vec;
use alloc::vec::Vec;

use super::{Error, Location};

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    match off.checked_add(2).and_then(|end| b.get(off..end)) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    match off.checked_add(4).and_then(|end| b.get(off..end)) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn set_u16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = off.checked_add(2).and_then(|end| b.get_mut(off..end)) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn set_u32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = off.checked_add(4).and_then(|end| b.get_mut(off..end)) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub const EXT2_MAGIC: u16 = 0xEF53;
/// Byte offset of the superblock on the disk, whatever the block size.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_SIZE: usize = 1024;
pub const GROUP_DESC_SIZE: usize = 32;
pub const ROOT_INODE: u32 = 2;

/// Feature bits (superblock `s_feature_*`).
pub mod feature {
    pub const COMPAT_HAS_JOURNAL: u32 = 0x0004;
    pub const INCOMPAT_FILETYPE: u32 = 0x0002;
    /// The incompatible features this crate implements.
    pub const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE;
    pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
    pub const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
    /// The read-only-compatible features this crate maintains when writing.
    pub const RO_COMPAT_SUPPORTED: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE;
}

/// Inode mode type bits.
pub mod mode {
    pub const TYPE_MASK: u16 = 0xF000;
    pub const FIFO: u16 = 0x1000;
    pub const CHAR_DEVICE: u16 = 0x2000;
    pub const DIRECTORY: u16 = 0x4000;
    pub const BLOCK_DEVICE: u16 = 0x6000;
    pub const REGULAR: u16 = 0x8000;
    pub const SYMLINK: u16 = 0xA000;
    pub const SOCKET: u16 = 0xC000;
}

/// Inode flag: the directory carries an htree index (we clear it when we modify the directory,
/// which leaves a valid linear directory).
pub const INDEX_FLAG: u32 = 0x1000;

pub(crate) struct Superblock {
    pub raw: Vec<u8>,
    pub inodes_count: u32,
    pub blocks_count: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub first_data_block: u32,
    pub log_block_size: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub write_time: u32,
    pub rev_level: u32,
    pub first_ino: u32,
    pub inode_size: u16,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub want_extra_isize: u16,
}

impl Superblock {
    pub fn parse(raw: &[u8]) -> Result<Self, Error> {
        let corrupt = |what| Error::Corrupt { what, at: Location::Superblock };
        if raw.len() < SUPERBLOCK_SIZE {
            return Err(corrupt("superblock too short"));
        }
        if u16_at(raw, 56) != EXT2_MAGIC {
            return Err(corrupt("bad magic number"));
        }
        let rev_level = u32_at(raw, 76);
        let (first_ino, inode_size) = if rev_level == 0 { (11, 128) } else { (u32_at(raw, 84), u16_at(raw, 88)) };
        Ok(Self {
            raw: raw[..SUPERBLOCK_SIZE].to_vec(),
            inodes_count: u32_at(raw, 0),
            blocks_count: u32_at(raw, 4),
            free_blocks: u32_at(raw, 12),
            free_inodes: u32_at(raw, 16),
            first_data_block: u32_at(raw, 20),
            log_block_size: u32_at(raw, 24),
            blocks_per_group: u32_at(raw, 32),
            inodes_per_group: u32_at(raw, 40),
            write_time: u32_at(raw, 48),
            rev_level,
            first_ino,
            inode_size,
            compat: if rev_level == 0 { 0 } else { u32_at(raw, 92) },
            incompat: if rev_level == 0 { 0 } else { u32_at(raw, 96) },
            ro_compat: if rev_level == 0 { 0 } else { u32_at(raw, 100) },
            want_extra_isize: u16_at(raw, 0x15E),
        })
    }

    /// The raw bytes with the fields this crate changes written in.
    pub fn serialize(&mut self) -> &[u8] {
        set_u32(&mut self.raw, 12, self.free_blocks);
        set_u32(&mut self.raw, 16, self.free_inodes);
        if self.rev_level > 0 {
            set_u32(&mut self.raw, 100, self.ro_compat);
        }
        &self.raw
    }
}

pub(crate) struct GroupDesc {
    pub raw: [u8; GROUP_DESC_SIZE],
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks: u16,
    pub free_inodes: u16,
    pub used_dirs: u16,
}

impl GroupDesc {
    pub fn parse(raw: &[u8]) -> Self {
        let mut bytes = [0; GROUP_DESC_SIZE];
        if let Some(src) = raw.get(..GROUP_DESC_SIZE) {
            bytes.copy_from_slice(src);
        }
        Self {
            raw: bytes,
            block_bitmap: u32_at(&bytes, 0),
            inode_bitmap: u32_at(&bytes, 4),
            inode_table: u32_at(&bytes, 8),
            free_blocks: u16_at(&bytes, 12),
            free_inodes: u16_at(&bytes, 14),
            used_dirs: u16_at(&bytes, 16),
        }
    }

    pub fn serialize(&mut self) -> [u8; GROUP_DESC_SIZE] {
        set_u16(&mut self.raw, 12, self.free_blocks);
        set_u16(&mut self.raw, 14, self.free_inodes);
        set_u16(&mut self.raw, 16, self.used_dirs);
        self.raw
    }
}

/// Direct pointers, then single, double and triple indirect.
pub const DIRECT_BLOCKS: usize = 12;
pub const BLOCK_POINTERS: usize = 15;

#[derive(Clone)]
pub(crate) struct Inode {
    pub raw: Vec<u8>,
    pub mode: u16,
    pub uid: u16,
    pub size: u64,
    pub atime: u32,
    pub ctime: u32,
    pub mtime: u32,
    pub dtime: u32,
    pub gid: u16,
    pub links: u16,
    /// In 512-byte units.
    pub blocks: u32,
    pub flags: u32,
    pub block: [u32; BLOCK_POINTERS],
    pub file_acl: u32,
}

impl Inode {
    pub fn parse(raw: Vec<u8>) -> Self {
        let mode = u16_at(&raw, 0);
        let mut block = [0; BLOCK_POINTERS];
        for (i, b) in block.iter_mut().enumerate() {
            *b = u32_at(&raw, 40 + 4 * i);
        }
        let size_high = if mode & mode::TYPE_MASK == mode::REGULAR { u32_at(&raw, 108) } else { 0 };
        Self {
            mode,
            uid: u16_at(&raw, 2),
            size: u64::from(u32_at(&raw, 4)) | (u64::from(size_high) << 32),
            atime: u32_at(&raw, 8),
            ctime: u32_at(&raw, 12),
            mtime: u32_at(&raw, 16),
            dtime: u32_at(&raw, 20),
            gid: u16_at(&raw, 24),
            links: u16_at(&raw, 26),
            blocks: u32_at(&raw, 28),
            flags: u32_at(&raw, 32),
            block,
            file_acl: u32_at(&raw, 104),
            raw,
        }
    }

    /// A fresh inode record of `inode_size` bytes.
    pub fn new(inode_size: usize, mode: u16, extra_isize: u16, now: u32) -> Self {
        let mut raw = vec![0; inode_size];
        if inode_size > 128 {
            set_u16(&mut raw, 128, extra_isize);
        }
        let mut inode = Self::parse(raw);
        inode.mode = mode;
        inode.atime = now;
        inode.ctime = now;
        inode.mtime = now;
        inode
    }

    pub fn serialize(&mut self) -> &[u8] {
        let raw = &mut self.raw;
        set_u16(raw, 0, self.mode);
        set_u16(raw, 2, self.uid);
        set_u32(raw, 4, self.size as u32);
        set_u32(raw, 8, self.atime);
        set_u32(raw, 12, self.ctime);
        set_u32(raw, 16, self.mtime);
        set_u32(raw, 20, self.dtime);
        set_u16(raw, 24, self.gid);
        set_u16(raw, 26, self.links);
        set_u32(raw, 28, self.blocks);
        set_u32(raw, 32, self.flags);
        for (i, b) in self.block.iter().enumerate() {
            set_u32(raw, 40 + 4 * i, *b);
        }
        set_u32(raw, 104, self.file_acl);
        if self.mode & mode::TYPE_MASK == mode::REGULAR {
            set_u32(raw, 108, (self.size >> 32) as u32);
        }
        &self.raw
    }

    pub fn kind(&self) -> u16 {
        self.mode & mode::TYPE_MASK
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == mode::DIRECTORY
    }

    /// Whether `block` holds block pointers (not a fast symlink's target or a device number).
    pub fn has_block_pointers(&self, block_size: usize) -> bool {
        match self.kind() {
            mode::REGULAR | mode::DIRECTORY => true,
            mode::SYMLINK => {
                let acl_sectors = if self.file_acl != 0 { (block_size / 512) as u32 } else { 0 };
                self.blocks > acl_sectors
            }
            _ => false,
        }
    }
}

/// Directory entry header: inode u32, rec_len u16, name_len u8, file_type u8.
pub const DIRENT_HEADER: usize = 8;

/// Bytes a directory entry with a name of `name_len` bytes needs.
pub fn dirent_size(name_len: usize) -> usize {
    (DIRENT_HEADER + name_len + 3) & !3
}
