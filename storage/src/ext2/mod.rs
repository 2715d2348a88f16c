//! ext2, revision 1 (and 0), no journal: read and write, over any [`BlockAccess`].
//!
//! Written from the format's documentation rather than taken from a crate: the crates that exist
//! are read-only (`ext4-view`), std-only (`ext2`), GPL (`efs`) or a superblock parser
//! (`mkfs-ext2`), and none reads through a caller's buffer cache or exposes the block map that
//! read-ahead needs.
//!
//! What a mount checks (each failure is an [`Error`], never a panic):
//! 1. Magic number, block size 1, 2 or 4 KiB and equal to the access's block size, first data
//!    block consistent with it, group geometry within the bitmap limits.
//! 2. Block and inode counts fit the device and the groups; group descriptors point inside the
//!    file system.
//! 3. Incompatible features other than `filetype` refuse the mount
//!    ([`Error::IncompatibleFeatures`]); read-only-compatible features other than `sparse_super` and
//!    `large_file` mount read-only ([`Error::ReadOnly`] on every change).
//!
//! After the mount, every block number read from disk is checked against the file system before
//! use, directory entries are checked (`rec_len`, `name_len`, inode number) before they are parsed,
//! indirect-block walks have a fixed depth, and freeing a block that is already free (a cycle or a
//! shared block) is reported as corruption.
//!
//! Every mutating operation checks up front that the free blocks and inodes it needs exist, so
//! that `NoSpace` leaves the file system unchanged.
//!
//! Left out: hard links (`link`), symlink creation, extended attributes (an inode's attribute
//! block is released on delete, never created), htree directory indexes (read as linear
//! directories; the index flag is cleared on modification), backup superblocks and descriptors
//! (only the primary copies are updated), timestamps beyond seconds, and the mount-count and
//! state fields.

mod dir;
mod file;
mod layout;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::block::{BlockDevice, RequestToken, SECTOR_SIZE};
use crate::cache::CacheError;
use layout::{GroupDesc, Inode, Superblock, GROUP_DESC_SIZE, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};

pub use layout::{feature, ROOT_INODE};

/// An inode number.
pub type Ino = u32;

/// What the file system needs from the block layer: synchronous, block-addressed access in
/// file-system blocks. The buffer cache provides it ([`crate::cache::CachedBlocks`]); the kernel
/// can implement it over its locked cache, sleeping on a wait queue in between.
pub trait BlockAccess {
    fn block_size(&self) -> usize;
    /// Device size in blocks.
    fn block_count(&self) -> u64;
    fn read_at(&mut self, block: u64, offset: usize, buf: &mut [u8]) -> core::result::Result<(), CacheError>;
    /// Writes part of a block (read-modify-write) or a whole block (no read).
    fn write_at(&mut self, block: u64, offset: usize, bytes: &[u8]) -> core::result::Result<(), CacheError>;
    fn zero_block(&mut self, block: u64) -> core::result::Result<(), CacheError> {
        let zeros = vec![0; self.block_size()];
        self.write_at(block, 0, &zeros)
    }
    /// Reads from `block` only if it is resident (no I/O, no waiting): `None` when it is not.
    /// For callers that must never block (a graft's callable).
    fn read_resident(&mut self, _block: u64, _offset: usize, _buf: &mut [u8]) -> Option<core::result::Result<(), CacheError>> {
        None
    }
    /// Starts reading `block` without waiting; a hint, may do nothing.
    fn prefetch(&mut self, _block: u64) -> core::result::Result<bool, CacheError> {
        Ok(false)
    }
    /// The block was freed: its cached contents need not be written.
    fn forget(&mut self, _block: u64) {}
    fn sync(&mut self) -> core::result::Result<(), CacheError>;
    fn sync_blocks(&mut self, _blocks: &[u64]) -> core::result::Result<(), CacheError> {
        self.sync()
    }
}

/// Where a corruption was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Superblock,
    Group(u32),
    Inode(Ino),
    Block(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Superblock => write!(f, "superblock"),
            Self::Group(g) => write!(f, "group {g}"),
            Self::Inode(i) => write!(f, "inode {i}"),
            Self::Block(b) => write!(f, "block {b}"),
        }
    }
}

/// Why a file-system operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    NotFound,
    Exists,
    NotADirectory,
    IsADirectory,
    NotEmpty,
    NoSpace,
    NameTooLong,
    /// A directory's link count would pass ext2's limit.
    TooManyLinks,
    /// The file would pass what the block map (or `i_blocks`) can address.
    FileTooLarge,
    /// Mounted read-only (unknown read-only-compatible features).
    ReadOnly,
    InvalidArgument { what: &'static str },
    /// The image uses incompatible features this crate does not implement (the bits are listed).
    IncompatibleFeatures { flags: u32 },
    /// The block size is not one this crate handles, or differs from the device access's.
    UnsupportedBlockSize { block_size: u64 },
    Corrupt { what: &'static str, at: Location },
    Io(CacheError),
}

impl From<CacheError> for Error {
    fn from(e: CacheError) -> Self {
        Self::Io(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => write!(f, "no such file or directory"),
            Self::Exists => write!(f, "file exists"),
            Self::NotADirectory => write!(f, "not a directory"),
            Self::IsADirectory => write!(f, "is a directory"),
            Self::NotEmpty => write!(f, "directory not empty"),
            Self::NoSpace => write!(f, "no space left on the file system"),
            Self::NameTooLong => write!(f, "name longer than 255 bytes"),
            Self::TooManyLinks => write!(f, "too many links"),
            Self::FileTooLarge => write!(f, "file too large"),
            Self::ReadOnly => write!(f, "file system mounted read-only"),
            Self::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Self::IncompatibleFeatures { flags } => {
                write!(f, "unsupported incompatible features {flags:#x}")
            }
            Self::UnsupportedBlockSize { block_size } => {
                write!(f, "unsupported block size {block_size}")
            }
            Self::Corrupt { what, at } => write!(f, "corrupt file system at {at}: {what}"),
            Self::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// The type of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

impl FileKind {
    fn from_mode(mode: u16) -> Self {
        match mode & layout::mode::TYPE_MASK {
            layout::mode::REGULAR => Self::Regular,
            layout::mode::DIRECTORY => Self::Directory,
            layout::mode::SYMLINK => Self::Symlink,
            layout::mode::CHAR_DEVICE => Self::CharDevice,
            layout::mode::BLOCK_DEVICE => Self::BlockDevice,
            layout::mode::FIFO => Self::Fifo,
            layout::mode::SOCKET => Self::Socket,
            _ => Self::Unknown,
        }
    }

    /// Directory-entry file type code (`filetype` feature).
    fn dirent_type(self) -> u8 {
        match self {
            Self::Regular => 1,
            Self::Directory => 2,
            Self::CharDevice => 3,
            Self::BlockDevice => 4,
            Self::Fifo => 5,
            Self::Socket => 6,
            Self::Symlink => 7,
            Self::Unknown => 0,
        }
    }
}

/// What `stat` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: Ino,
    pub kind: FileKind,
    /// Permission bits (the low 12 bits of the mode).
    pub permissions: u16,
    pub size: u64,
    pub links: u16,
    /// Allocated space in 512-byte units, indirect blocks included.
    pub blocks_512: u32,
    pub uid: u16,
    pub gid: u16,
    pub atime: u32,
    pub mtime: u32,
    pub ctime: u32,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub name: Vec<u8>,
    /// From the entry's type byte if the image has `filetype`, else `Unknown`.
    pub kind: FileKind,
}

impl DirEntry {
    pub fn name_str(&self) -> &str {
        core::str::from_utf8(&self.name).unwrap_or("<non-UTF-8 name>")
    }
}

/// Whole-file-system figures (for `df`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u32,
    pub free_blocks: u32,
    pub inodes: u32,
    pub free_inodes: u32,
    pub read_only: bool,
}

/// Reads the superblock straight from `device` (nothing else in flight) and returns the file
/// system's block size, so that the cache can be made with it. Polls at most `max_polls` times.
pub fn probe_block_size<D: BlockDevice>(device: &mut D, max_polls: u64) -> Result<usize> {
    let sector = SUPERBLOCK_OFFSET / SECTOR_SIZE as u64;
    let token = device
        .submit_read(sector, vec![0; SUPERBLOCK_SIZE])
        .map_err(|error| Error::Io(CacheError::Device { block: 1, error }))?;
    let mut polls = 0;
    loop {
        if let Some(done) = device.poll_completion()
            && done.token == token {
                done.result.map_err(|error| Error::Io(CacheError::Device { block: 1, error }))?;
                let sb = Superblock::parse(&done.buffer)?;
                if sb.log_block_size > 2 {
                    return Err(Error::UnsupportedBlockSize {
                        block_size: 1024u64.checked_shl(sb.log_block_size).unwrap_or(0),
                    });
                }
                return Ok(1024 << sb.log_block_size);
            }
        polls += 1;
        if polls > max_polls {
            return Err(Error::Io(CacheError::Stuck { token: RequestToken(token.0) }));
        }
    }
}

/// A mounted ext2 file system.
pub struct Ext2<B: BlockAccess> {
    dev: B,
    sb: Superblock,
    groups: Vec<GroupDesc>,
    dirty_groups: Vec<bool>,
    sb_dirty: bool,
    block_size: usize,
    /// Block pointers per indirect block.
    pointers_per_block: u64,
    group_count: u32,
    read_only: bool,
    now: u32,
}

impl<B: BlockAccess> Ext2<B> {
    /// Mounts the file system on `dev`; see the module header for what is checked.
    pub fn mount(mut dev: B) -> Result<Self> {
        let dev_block_size = dev.block_size();
        if dev_block_size < SUPERBLOCK_SIZE || !dev_block_size.is_power_of_two() {
            return Err(Error::UnsupportedBlockSize { block_size: dev_block_size as u64 });
        }
        let mut raw = vec![0; SUPERBLOCK_SIZE];
        let sb_block = SUPERBLOCK_OFFSET / dev_block_size as u64;
        let sb_offset = (SUPERBLOCK_OFFSET % dev_block_size as u64) as usize;
        dev.read_at(sb_block, sb_offset, &mut raw)?;
        let sb = Superblock::parse(&raw)?;
        let corrupt = |what| Error::Corrupt { what, at: Location::Superblock };

        if sb.log_block_size > 2 {
            return Err(Error::UnsupportedBlockSize {
                block_size: 1024u64.checked_shl(sb.log_block_size).unwrap_or(0),
            });
        }
        let block_size = 1024usize << sb.log_block_size;
        if block_size != dev_block_size {
            return Err(Error::UnsupportedBlockSize { block_size: block_size as u64 });
        }
        if sb.incompat & !feature::INCOMPAT_SUPPORTED != 0 {
            return Err(Error::IncompatibleFeatures { flags: sb.incompat & !feature::INCOMPAT_SUPPORTED });
        }
        let read_only = sb.ro_compat & !feature::RO_COMPAT_SUPPORTED != 0
            // A journal we would not replay nor maintain: reading is safe, writing is not.
            || sb.compat & feature::COMPAT_HAS_JOURNAL != 0;
        let expected_first = if block_size == 1024 { 1 } else { 0 };
        if sb.first_data_block != expected_first {
            return Err(corrupt("first data block does not match the block size"));
        }
        let bits_per_block = 8 * block_size as u32;
        if sb.blocks_per_group == 0 || sb.blocks_per_group > bits_per_block || sb.blocks_per_group % 8 != 0 {
            return Err(corrupt("blocks per group out of range"));
        }
        if sb.inodes_per_group == 0 || sb.inodes_per_group > bits_per_block {
            return Err(corrupt("inodes per group out of range"));
        }
        if sb.blocks_count <= sb.first_data_block || u64::from(sb.blocks_count) > dev.block_count() {
            return Err(corrupt("block count past the end of the device"));
        }
        let inode_size = usize::from(sb.inode_size);
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(corrupt("inode size out of range"));
        }
        let group_count = (sb.blocks_count - sb.first_data_block).div_ceil(sb.blocks_per_group);
        if u64::from(sb.inodes_count) > u64::from(group_count) * u64::from(sb.inodes_per_group)
            || sb.inodes_count < ROOT_INODE
        {
            return Err(corrupt("inode count does not match the groups"));
        }
        if sb.first_ino < 3 || sb.first_ino > sb.inodes_count {
            return Err(corrupt("first non-reserved inode out of range"));
        }
        let inode_table_blocks =
            (u64::from(sb.inodes_per_group) * inode_size as u64).div_ceil(block_size as u64);

        // The group descriptor table follows the superblock's block.
        let gdt_start = u64::from(sb.first_data_block) + 1;
        let gdt_bytes = group_count as usize * GROUP_DESC_SIZE;
        let gdt_blocks = gdt_bytes.div_ceil(block_size) as u64;
        if gdt_start + gdt_blocks > u64::from(sb.blocks_count) {
            return Err(corrupt("group descriptor table past the end"));
        }
        let mut groups = Vec::with_capacity(group_count as usize);
        let mut table = vec![0; block_size];
        for g in 0..group_count {
            let byte = g as usize * GROUP_DESC_SIZE;
            let offset = byte % block_size;
            if offset == 0 {
                dev.read_at(gdt_start + (byte / block_size) as u64, 0, &mut table)?;
            }
            let gd = GroupDesc::parse(table.get(offset..).unwrap_or(&[]));
            let bad = |b: u32| b < sb.first_data_block || b >= sb.blocks_count;
            if bad(gd.block_bitmap)
                || bad(gd.inode_bitmap)
                || bad(gd.inode_table)
                || u64::from(gd.inode_table) + inode_table_blocks > u64::from(sb.blocks_count)
            {
                return Err(Error::Corrupt { what: "group descriptor points outside the file system", at: Location::Group(g) });
            }
            groups.push(gd);
        }
        let now = sb.write_time;
        Ok(Self {
            dev,
            dirty_groups: vec![false; groups.len()],
            groups,
            sb,
            sb_dirty: false,
            block_size,
            pointers_per_block: (block_size / 4) as u64,
            group_count,
            read_only,
            now,
        })
    }

    /// Sets the clock used for inode timestamps (seconds since 1970).
    pub fn set_time(&mut self, seconds: u32) {
        self.now = seconds;
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn access(&self) -> &B {
        &self.dev
    }

    pub fn access_mut(&mut self) -> &mut B {
        &mut self.dev
    }

    /// Writes back metadata and every dirty block, then gives the block access back.
    pub fn unmount(mut self) -> Result<B> {
        self.sync()?;
        Ok(self.dev)
    }

    /// Gives the block access back without writing anything: what a crash leaves behind.
    pub fn abandon(self) -> B {
        self.dev
    }

    pub fn stats(&self) -> FsStats {
        FsStats {
            block_size: self.block_size as u32,
            blocks: self.sb.blocks_count,
            free_blocks: self.sb.free_blocks,
            inodes: self.sb.inodes_count,
            free_inodes: self.sb.free_inodes,
            read_only: self.read_only,
        }
    }

    /// Writes every dirty block (metadata included) and waits for the disk.
    pub fn sync(&mut self) -> Result<()> {
        self.flush_metadata()?;
        self.dev.sync()?;
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only { Err(Error::ReadOnly) } else { Ok(()) }
    }

    /// Puts the in-memory superblock and group descriptors into their blocks (in the cache).
    fn flush_metadata(&mut self) -> Result<()> {
        if self.sb_dirty {
            let block = SUPERBLOCK_OFFSET / self.block_size as u64;
            let offset = (SUPERBLOCK_OFFSET % self.block_size as u64) as usize;
            let raw = self.sb.serialize().to_vec();
            self.dev.write_at(block, offset, &raw)?;
            self.sb_dirty = false;
        }
        let gdt_start = u64::from(self.sb.first_data_block) + 1;
        for g in 0..self.groups.len() {
            if !self.dirty_groups[g] {
                continue;
            }
            let byte = g * GROUP_DESC_SIZE;
            let raw = self.groups[g].serialize();
            self.dev.write_at(gdt_start + (byte / self.block_size) as u64, byte % self.block_size, &raw)?;
            self.dirty_groups[g] = false;
        }
        Ok(())
    }

    /// Blocks holding metadata that an fsync must also write (superblock, descriptors, bitmaps).
    fn metadata_blocks(&self) -> Vec<u64> {
        let mut blocks = vec![SUPERBLOCK_OFFSET / self.block_size as u64];
        let gdt_start = u64::from(self.sb.first_data_block) + 1;
        let gdt_blocks = (self.groups.len() * GROUP_DESC_SIZE).div_ceil(self.block_size) as u64;
        blocks.extend(gdt_start..gdt_start + gdt_blocks);
        for gd in &self.groups {
            blocks.push(u64::from(gd.block_bitmap));
            blocks.push(u64::from(gd.inode_bitmap));
        }
        blocks
    }

    /// Runs a mutating operation and writes the metadata it changed into the cache, whatever
    /// its outcome (a failure part-way must not leave counts and bitmaps disagreeing).
    fn mutate<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_writable()?;
        let result = op(self);
        let flushed = self.flush_metadata();
        let value = result?;
        flushed?;
        Ok(value)
    }

    // ---- inodes ----

    fn inode_location(&self, ino: Ino) -> Result<(u64, usize)> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(Error::Corrupt { what: "inode number out of range", at: Location::Inode(ino) });
        }
        let index = ino - 1;
        let group = (index / self.sb.inodes_per_group) as usize;
        let gd = self
            .groups
            .get(group)
            .ok_or(Error::Corrupt { what: "inode number out of range", at: Location::Inode(ino) })?;
        let byte = u64::from(index % self.sb.inodes_per_group) * u64::from(self.sb.inode_size);
        let block = u64::from(gd.inode_table) + byte / self.block_size as u64;
        Ok((block, (byte % self.block_size as u64) as usize))
    }

    /// The inode, if its block is resident (`None`: reading it would need the disk).
    pub(super) fn read_inode_resident(&mut self, ino: Ino) -> Result<Option<Inode>> {
        let (block, offset) = self.inode_location(ino)?;
        let mut raw = vec![0; usize::from(self.sb.inode_size)];
        match self.dev.read_resident(block, offset, &mut raw) {
            Some(r) => {
                r?;
                Ok(Some(Inode::parse(raw)))
            }
            None => Ok(None),
        }
    }

    /// A file's size without any I/O: `None` when its inode is not resident.
    pub fn size_resident(&mut self, ino: Ino) -> Result<Option<u64>> {
        Ok(self.read_inode_resident(ino)?.map(|i| i.size))
    }

    fn read_inode(&mut self, ino: Ino) -> Result<Inode> {
        let (block, offset) = self.inode_location(ino)?;
        let mut raw = vec![0; usize::from(self.sb.inode_size)];
        self.dev.read_at(block, offset, &mut raw)?;
        Ok(Inode::parse(raw))
    }

    fn write_inode(&mut self, ino: Ino, inode: &mut Inode) -> Result<()> {
        let (block, offset) = self.inode_location(ino)?;
        let raw = inode.serialize();
        self.dev.write_at(block, offset, raw)?;
        Ok(())
    }

    fn group_of_inode(&self, ino: Ino) -> u32 {
        ino.saturating_sub(1) / self.sb.inodes_per_group
    }

    // ---- allocation ----

    fn check_block(&self, block: u64, at: Location) -> Result<u64> {
        if block >= u64::from(self.sb.first_data_block) && block < u64::from(self.sb.blocks_count) {
            Ok(block)
        } else {
            Err(Error::Corrupt { what: "block pointer outside the file system", at })
        }
    }

    /// Allocates a free block, the first one at or after `goal` (wrapping).
    fn alloc_block(&mut self, goal: u64) -> Result<u64> {
        if self.sb.free_blocks == 0 {
            return Err(Error::NoSpace);
        }
        let first = u64::from(self.sb.first_data_block);
        let total = u64::from(self.sb.blocks_count);
        let per_group = u64::from(self.sb.blocks_per_group);
        let goal = if goal >= first && goal < total { goal } else { first };
        let start_group = ((goal - first) / per_group) as u32;
        let mut bitmap = vec![0; self.block_size];
        for i in 0..=self.group_count {
            let g = (start_group + i) % self.group_count;
            let gi = g as usize;
            if self.groups[gi].free_blocks == 0 {
                continue;
            }
            let group_first = first + u64::from(g) * per_group;
            let in_group = (total - group_first).min(per_group) as usize;
            let bitmap_block = u64::from(self.groups[gi].block_bitmap);
            self.dev.read_at(bitmap_block, 0, &mut bitmap)?;
            let start_bit = if i == 0 { ((goal - first) % per_group) as usize } else { 0 };
            let found = find_clear_bit(&bitmap, start_bit, in_group)
                .or_else(|| find_clear_bit(&bitmap, 0, start_bit.min(in_group)));
            let Some(bit) = found else {
                return Err(Error::Corrupt { what: "free-block count disagrees with the bitmap", at: Location::Group(g) });
            };
            let byte = bitmap.get(bit / 8).copied().unwrap_or(0) | (1 << (bit % 8));
            self.dev.write_at(bitmap_block, bit / 8, &[byte])?;
            self.groups[gi].free_blocks -= 1;
            self.dirty_groups[gi] = true;
            self.sb.free_blocks -= 1;
            self.sb_dirty = true;
            return Ok(group_first + bit as u64);
        }
        Err(Error::NoSpace)
    }

    fn free_block(&mut self, block: u64, at: Location) -> Result<()> {
        self.check_block(block, at)?;
        let rel = block - u64::from(self.sb.first_data_block);
        let g = (rel / u64::from(self.sb.blocks_per_group)) as usize;
        let bit = (rel % u64::from(self.sb.blocks_per_group)) as usize;
        let bitmap_block = u64::from(self.groups.get(g).ok_or(Error::Corrupt { what: "block outside every group", at })?.block_bitmap);
        let mut byte = [0u8];
        self.dev.read_at(bitmap_block, bit / 8, &mut byte)?;
        if byte[0] & (1 << (bit % 8)) == 0 {
            return Err(Error::Corrupt { what: "block freed twice (shared or cyclic block pointers)", at: Location::Block(block) });
        }
        byte[0] &= !(1 << (bit % 8));
        self.dev.write_at(bitmap_block, bit / 8, &byte)?;
        self.groups[g].free_blocks = self.groups[g].free_blocks.saturating_add(1);
        self.dirty_groups[g] = true;
        self.sb.free_blocks = self.sb.free_blocks.saturating_add(1);
        self.sb_dirty = true;
        self.dev.forget(block);
        Ok(())
    }

    /// Allocates an inode, preferring group `near`.
    fn alloc_inode(&mut self, near: u32, is_dir: bool) -> Result<Ino> {
        if self.sb.free_inodes == 0 {
            return Err(Error::NoSpace);
        }
        let per_group = self.sb.inodes_per_group;
        let mut bitmap = vec![0; self.block_size];
        for i in 0..self.group_count {
            let g = (near + i) % self.group_count;
            let gi = g as usize;
            if self.groups[gi].free_inodes == 0 {
                continue;
            }
            let bitmap_block = u64::from(self.groups[gi].inode_bitmap);
            self.dev.read_at(bitmap_block, 0, &mut bitmap)?;
            let in_group = per_group.min(self.sb.inodes_count.saturating_sub(g * per_group)) as usize;
            // Reserved inodes (below first_ino) are never handed out even if their bits are clear.
            let first_usable = if g == 0 { (self.sb.first_ino - 1) as usize } else { 0 };
            let Some(bit) = find_clear_bit(&bitmap, first_usable, in_group) else {
                return Err(Error::Corrupt { what: "free-inode count disagrees with the bitmap", at: Location::Group(g) });
            };
            let byte = bitmap.get(bit / 8).copied().unwrap_or(0) | (1 << (bit % 8));
            self.dev.write_at(bitmap_block, bit / 8, &[byte])?;
            let gd = &mut self.groups[gi];
            gd.free_inodes -= 1;
            if is_dir {
                gd.used_dirs = gd.used_dirs.saturating_add(1);
            }
            self.dirty_groups[gi] = true;
            self.sb.free_inodes -= 1;
            self.sb_dirty = true;
            return Ok(g * per_group + bit as u32 + 1);
        }
        Err(Error::NoSpace)
    }

    fn free_inode(&mut self, ino: Ino, was_dir: bool) -> Result<()> {
        self.inode_location(ino)?;
        let g = self.group_of_inode(ino) as usize;
        let bit = ((ino - 1) % self.sb.inodes_per_group) as usize;
        let bitmap_block = u64::from(self.groups[g].inode_bitmap);
        let mut byte = [0u8];
        self.dev.read_at(bitmap_block, bit / 8, &mut byte)?;
        if byte[0] & (1 << (bit % 8)) == 0 {
            return Err(Error::Corrupt { what: "inode freed twice", at: Location::Inode(ino) });
        }
        byte[0] &= !(1 << (bit % 8));
        self.dev.write_at(bitmap_block, bit / 8, &byte)?;
        let gd = &mut self.groups[g];
        gd.free_inodes = gd.free_inodes.saturating_add(1);
        if was_dir {
            gd.used_dirs = gd.used_dirs.saturating_sub(1);
        }
        self.dirty_groups[g] = true;
        self.sb.free_inodes = self.sb.free_inodes.saturating_add(1);
        self.sb_dirty = true;
        Ok(())
    }

    // ---- inode-level queries ----

    pub fn stat(&mut self, ino: Ino) -> Result<Stat> {
        let inode = self.read_inode(ino)?;
        Ok(Stat {
            ino,
            kind: FileKind::from_mode(inode.mode),
            permissions: inode.mode & 0o7777,
            size: inode.size,
            links: inode.links,
            blocks_512: inode.blocks,
            uid: inode.uid,
            gid: inode.gid,
            atime: inode.atime,
            mtime: inode.mtime,
            ctime: inode.ctime,
        })
    }

    /// Writes a file's data, its block map and its inode to disk and waits (plus the bitmaps,
    /// descriptors and superblock, which an allocation may have changed).
    pub fn fsync(&mut self, ino: Ino) -> Result<()> {
        self.flush_metadata()?;
        let inode = self.read_inode(ino)?;
        let mut blocks = self.file_block_list(ino, &inode)?;
        blocks.push(self.inode_location(ino)?.0);
        blocks.extend(self.metadata_blocks());
        self.dev.sync_blocks(&blocks)?;
        Ok(())
    }
}

/// The first clear bit in `[from, to)` of `bitmap`.
fn find_clear_bit(bitmap: &[u8], from: usize, to: usize) -> Option<usize> {
    let mut bit = from;
    while bit < to {
        let byte = *bitmap.get(bit / 8)?;
        if byte == 0xFF && bit.is_multiple_of(8) {
            bit += 8;
            continue;
        }
        if byte & (1 << (bit % 8)) == 0 {
            return Some(bit);
        }
        bit += 1;
    }
    None
}
