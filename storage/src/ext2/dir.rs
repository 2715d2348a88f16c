//! Directories and the name space: entries (a linked list per block, chained by `rec_len`),
//! path lookup, create, mkdir, unlink, rmdir, rename, readdir.
//!
//! Every entry is checked before use: `rec_len` at least 8, a multiple of 4 and inside the block,
//! `name_len` inside `rec_len`, inode number in range. A directory's size is whole blocks and it
//! has no holes.

use alloc::vec;
use alloc::vec::Vec;

use super::layout::{dirent_size, feature, mode, set_u16, set_u32, u16_at, u32_at, Inode, DIRENT_HEADER, INDEX_FLAG, ROOT_INODE};
use super::{BlockAccess, DirEntry, Error, Ext2, FileKind, Ino, Location, Result};

const MAX_NAME: usize = 255;
/// ext2's limit on a directory's link count.
const LINK_MAX: u16 = 32000;

/// A parsed, checked entry header within one directory block.
#[derive(Clone, Copy)]
struct RawEntry {
    offset: usize,
    ino: Ino,
    rec_len: usize,
    name_len: usize,
    file_type: u8,
}

impl RawEntry {
    fn name<'a>(&self, block: &'a [u8]) -> &'a [u8] {
        let start = self.offset + DIRENT_HEADER;
        block.get(start..start + self.name_len).unwrap_or(&[])
    }
}

/// Where a new entry goes in an existing block.
struct Slot {
    file_block: u64,
    block: u64,
    entry: RawEntry,
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::InvalidArgument { what: "bad file name" });
    }
    if name == b"." || name == b".." {
        return Err(Error::InvalidArgument { what: "'.' and '..' cannot be created or removed" });
    }
    if name.len() > MAX_NAME {
        return Err(Error::NameTooLong);
    }
    Ok(())
}

/// Splits `path` into its parent directory's path and its last component.
fn split_parent(path: &str) -> Result<(&str, &[u8])> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) => Ok((&trimmed[..i], &trimmed.as_bytes()[i + 1..])),
        None if !trimmed.is_empty() => Ok(("", trimmed.as_bytes())),
        None => Err(Error::InvalidArgument { what: "path names no entry" }),
    }
}

fn write_entry(block: &mut [u8], offset: usize, ino: Ino, rec_len: usize, name: &[u8], file_type: u8) {
    set_u32(block, offset, ino);
    set_u16(block, offset + 4, rec_len as u16);
    if let Some(b) = block.get_mut(offset + 6) {
        *b = name.len() as u8;
    }
    if let Some(b) = block.get_mut(offset + 7) {
        *b = file_type;
    }
    let start = offset + DIRENT_HEADER;
    if let Some(dst) = block.get_mut(start..start + name.len()) {
        dst.copy_from_slice(name);
    }
}

impl<B: BlockAccess> Ext2<B> {
    fn parse_dir_block(&self, dir: Ino, block: u64, data: &[u8]) -> Result<Vec<RawEntry>> {
        let corrupt = |what| Error::Corrupt { what, at: Location::Block(block) };
        let mut entries = Vec::new();
        let mut offset = 0;
        while offset < data.len() {
            if offset + DIRENT_HEADER > data.len() {
                return Err(corrupt("directory entry header crosses the block end"));
            }
            let ino = u32_at(data, offset);
            let rec_len = usize::from(u16_at(data, offset + 4));
            let name_len = usize::from(data[offset + 6]);
            let file_type = data[offset + 7];
            if rec_len < DIRENT_HEADER || rec_len % 4 != 0 || offset + rec_len > data.len() {
                return Err(corrupt("directory entry with a bad rec_len"));
            }
            if ino != 0 {
                if DIRENT_HEADER + name_len > rec_len {
                    return Err(corrupt("directory entry name overruns its record"));
                }
                if ino > self.sb.inodes_count {
                    return Err(Error::Corrupt { what: "directory entry names an inode out of range", at: Location::Inode(dir) });
                }
            }
            entries.push(RawEntry { offset, ino, rec_len, name_len, file_type });
            offset += rec_len;
        }
        Ok(entries)
    }

    fn directory(&mut self, ino: Ino) -> Result<Inode> {
        let inode = self.read_inode(ino)?;
        if !inode.is_dir() {
            return Err(Error::NotADirectory);
        }
        if inode.size % self.block_size as u64 != 0 {
            return Err(Error::Corrupt { what: "directory size is not whole blocks", at: Location::Inode(ino) });
        }
        Ok(inode)
    }

    /// Calls `visit` with each block of directory `dir` (file block, disk block, contents,
    /// entries) until it returns `Some`.
    fn scan_dir<T>(
        &mut self,
        dir: Ino,
        inode: &Inode,
        mut visit: impl FnMut(u64, u64, &[u8], &[RawEntry]) -> Option<T>,
    ) -> Result<Option<T>> {
        let blocks = inode.size / self.block_size as u64;
        let mut data = vec![0; self.block_size];
        for file_block in 0..blocks {
            let block = self
                .map_block(dir, inode, file_block)?
                .ok_or(Error::Corrupt { what: "hole in a directory", at: Location::Inode(dir) })?;
            self.dev.read_at(block, 0, &mut data)?;
            let entries = self.parse_dir_block(dir, block, &data)?;
            if let Some(found) = visit(file_block, block, &data, &entries) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The inode named `name` in directory `dir`.
    pub fn lookup_in(&mut self, dir: Ino, name: &[u8]) -> Result<Ino> {
        if name.len() > MAX_NAME {
            return Err(Error::NameTooLong);
        }
        let inode = self.directory(dir)?;
        let found = self.scan_dir(dir, &inode, |_, _, data, entries| {
            entries.iter().find(|e| e.ino != 0 && e.name(data) == name).map(|e| e.ino)
        })?;
        found.ok_or(Error::NotFound)
    }

    /// The inode at `path` (absolute, or relative to the root), following `.` and `..`.
    pub fn lookup(&mut self, path: &str) -> Result<Ino> {
        let mut ino = ROOT_INODE;
        for component in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            ino = self.lookup_in(ino, component.as_bytes())?;
        }
        Ok(ino)
    }

    fn parent_of(&mut self, path: &str) -> Result<(Ino, Vec<u8>)> {
        let (parent, name) = split_parent(path)?;
        let name = name.to_vec();
        let dir = self.lookup(parent)?;
        Ok((dir, name))
    }

    /// The entries of directory `dir`, `.` and `..` included, in on-disk order.
    pub fn readdir(&mut self, dir: Ino) -> Result<Vec<DirEntry>> {
        let inode = self.directory(dir)?;
        let filetype = self.sb.incompat & feature::INCOMPAT_FILETYPE != 0;
        let mut list = Vec::new();
        self.scan_dir(dir, &inode, |_, _, data, entries| {
            for e in entries.iter().filter(|e| e.ino != 0) {
                let kind = if filetype { kind_from_dirent(e.file_type) } else { FileKind::Unknown };
                list.push(DirEntry { ino: e.ino, name: e.name(data).to_vec(), kind });
            }
            None::<()>
        })?;
        Ok(list)
    }

    fn dirent_type(&self, kind: FileKind) -> u8 {
        if self.sb.incompat & feature::INCOMPAT_FILETYPE != 0 { kind.dirent_type() } else { 0 }
    }

    fn find_slot(&mut self, dir: Ino, inode: &Inode, name_len: usize) -> Result<Option<Slot>> {
        let need = dirent_size(name_len);
        self.scan_dir(dir, inode, |file_block, block, _, entries| {
            entries
                .iter()
                .find(|e| {
                    if e.ino == 0 { e.rec_len >= need } else { e.rec_len >= dirent_size(e.name_len) + need }
                })
                .map(|&entry| Slot { file_block, block, entry })
        })
    }

    /// Blocks adding an entry named `name_len` bytes to `dir` would allocate.
    fn entry_blocks_needed(&mut self, dir: Ino, name_len: usize) -> Result<u64> {
        let inode = self.directory(dir)?;
        if self.find_slot(dir, &inode, name_len)?.is_some() {
            return Ok(0);
        }
        let next = inode.size / self.block_size as u64;
        self.blocks_needed(dir, &inode, next, next)
    }

    /// Adds entry `name` -> `target` to `dir`, growing it by a block if no block has room.
    fn add_entry(&mut self, dir: Ino, name: &[u8], target: Ino, kind: FileKind) -> Result<()> {
        let mut inode = self.directory(dir)?;
        let file_type = self.dirent_type(kind);
        let need = dirent_size(name.len());
        let mut data = vec![0; self.block_size];
        if let Some(slot) = self.find_slot(dir, &inode, name.len())? {
            let _ = slot.file_block;
            self.dev.read_at(slot.block, 0, &mut data)?;
            let e = slot.entry;
            if e.ino == 0 {
                write_entry(&mut data, e.offset, target, e.rec_len, name, file_type);
            } else {
                let used = dirent_size(e.name_len);
                set_u16(&mut data, e.offset + 4, used as u16);
                write_entry(&mut data, e.offset + used, target, e.rec_len - used, name, file_type);
            }
            self.dev.write_at(slot.block, 0, &data)?;
        } else {
            let next = inode.size / self.block_size as u64;
            let mut goal = match next.checked_sub(1) {
                Some(prev) => self.map_block(dir, &inode, prev)?.map_or(0, |b| b + 1),
                None => 0,
            };
            let (block, _) = self.map_block_alloc(dir, &mut inode, next, &mut goal)?;
            data.fill(0);
            write_entry(&mut data, 0, target, self.block_size, name, file_type);
            debug_assert!(need <= self.block_size);
            self.dev.write_at(block, 0, &data)?;
            inode.size += self.block_size as u64;
        }
        // We keep the directory linear; an htree index would now be stale.
        inode.flags &= !INDEX_FLAG;
        inode.mtime = self.now;
        inode.ctime = self.now;
        self.write_inode(dir, &mut inode)
    }

    /// Removes entry `name` from `dir` (merging its record into the previous one) and returns
    /// the inode it named.
    fn remove_entry(&mut self, dir: Ino, name: &[u8]) -> Result<Ino> {
        let mut inode = self.directory(dir)?;
        let found = self.scan_dir(dir, &inode, |_, block, data, entries| {
            let i = entries.iter().position(|e| e.ino != 0 && e.name(data) == name)?;
            Some((block, i, entries.to_vec()))
        })?;
        let (block, i, entries) = found.ok_or(Error::NotFound)?;
        let mut data = vec![0; self.block_size];
        self.dev.read_at(block, 0, &mut data)?;
        let entry = entries[i];
        match i.checked_sub(1).and_then(|p| entries.get(p)) {
            Some(prev) => set_u16(&mut data, prev.offset + 4, (prev.rec_len + entry.rec_len) as u16),
            None => set_u32(&mut data, entry.offset, 0),
        }
        self.dev.write_at(block, 0, &data)?;
        inode.flags &= !INDEX_FLAG;
        inode.mtime = self.now;
        inode.ctime = self.now;
        self.write_inode(dir, &mut inode)?;
        Ok(entry.ino)
    }

    /// Points existing entry `name` in `dir` at `target` (rename over an existing name).
    fn retarget_entry(&mut self, dir: Ino, name: &[u8], target: Ino, kind: FileKind) -> Result<()> {
        let inode = self.directory(dir)?;
        let found = self.scan_dir(dir, &inode, |_, block, data, entries| {
            entries.iter().find(|e| e.ino != 0 && e.name(data) == name).map(|e| (block, e.offset))
        })?;
        let (block, offset) = found.ok_or(Error::NotFound)?;
        self.dev.write_at(block, offset, &target.to_le_bytes())?;
        self.dev.write_at(block, offset + 7, &[self.dirent_type(kind)])?;
        Ok(())
    }

    fn is_empty_dir(&mut self, dir: Ino) -> Result<bool> {
        let inode = self.directory(dir)?;
        let other = self.scan_dir(dir, &inode, |_, _, data, entries| {
            entries.iter().find(|e| e.ino != 0 && e.name(data) != b"." && e.name(data) != b"..").map(|_| ())
        })?;
        Ok(other.is_none())
    }

    fn adjust_links(&mut self, ino: Ino, delta: i32) -> Result<()> {
        let mut inode = self.read_inode(ino)?;
        let links = i32::from(inode.links) + delta;
        if links > i32::from(LINK_MAX) {
            return Err(Error::TooManyLinks);
        }
        inode.links = links.max(0) as u16;
        inode.ctime = self.now;
        self.write_inode(ino, &mut inode)
    }

    fn new_inode(&mut self, parent: Ino, kind_mode: u16, permissions: u16) -> Result<(Ino, Inode)> {
        let is_dir = kind_mode == mode::DIRECTORY;
        let ino = self.alloc_inode(self.group_of_inode(parent), is_dir)?;
        let room = self.sb.inode_size.saturating_sub(128);
        let want = self.sb.want_extra_isize;
        // 32 bytes is what mke2fs gives its own inodes; a corrupt wish is not followed.
        let extra = if want != 0 && want <= room && want.is_multiple_of(4) { want } else { 32.min(room) };
        let inode = Inode::new(usize::from(self.sb.inode_size), kind_mode | (permissions & 0o7777), extra, self.now);
        Ok((ino, inode))
    }

    /// Creates an empty regular file `name` in `dir`.
    pub fn create(&mut self, dir: Ino, name: &[u8], permissions: u16) -> Result<Ino> {
        self.mutate(|fs| {
            check_name(name)?;
            match fs.lookup_in(dir, name) {
                Ok(_) => return Err(Error::Exists),
                Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
            if fs.sb.free_inodes == 0 || fs.entry_blocks_needed(dir, name.len())? > u64::from(fs.sb.free_blocks) {
                return Err(Error::NoSpace);
            }
            let (ino, mut inode) = fs.new_inode(dir, mode::REGULAR, permissions)?;
            inode.links = 1;
            fs.write_inode(ino, &mut inode)?;
            fs.add_entry(dir, name, ino, FileKind::Regular)?;
            Ok(ino)
        })
    }

    pub fn create_path(&mut self, path: &str, permissions: u16) -> Result<Ino> {
        let (dir, name) = self.parent_of(path)?;
        self.create(dir, &name, permissions)
    }

    /// Creates directory `name` in `dir`, with `.` and `..`.
    pub fn mkdir(&mut self, dir: Ino, name: &[u8], permissions: u16) -> Result<Ino> {
        self.mutate(|fs| {
            check_name(name)?;
            match fs.lookup_in(dir, name) {
                Ok(_) => return Err(Error::Exists),
                Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
            if fs.read_inode(dir)?.links >= LINK_MAX {
                return Err(Error::TooManyLinks);
            }
            if fs.sb.free_inodes == 0 || 1 + fs.entry_blocks_needed(dir, name.len())? > u64::from(fs.sb.free_blocks) {
                return Err(Error::NoSpace);
            }
            let (ino, mut inode) = fs.new_inode(dir, mode::DIRECTORY, permissions)?;
            let group_start = u64::from(fs.sb.first_data_block)
                + u64::from(fs.group_of_inode(ino)) * u64::from(fs.sb.blocks_per_group);
            let block = fs.alloc_block(group_start)?;
            let mut data = vec![0; fs.block_size];
            let dir_type = fs.dirent_type(FileKind::Directory);
            write_entry(&mut data, 0, ino, 12, b".", dir_type);
            write_entry(&mut data, 12, dir, fs.block_size - 12, b"..", dir_type);
            fs.dev.write_at(block, 0, &data)?;
            inode.links = 2;
            inode.size = fs.block_size as u64;
            inode.blocks = (fs.block_size / 512) as u32;
            inode.block[0] = block as u32;
            fs.write_inode(ino, &mut inode)?;
            fs.add_entry(dir, name, ino, FileKind::Directory)?;
            fs.adjust_links(dir, 1)?;
            Ok(ino)
        })
    }

    pub fn mkdir_path(&mut self, path: &str, permissions: u16) -> Result<Ino> {
        let (dir, name) = self.parent_of(path)?;
        self.mkdir(dir, &name, permissions)
    }

    /// Drops one link to `ino`; at zero links its storage and the inode are freed.
    fn drop_link(&mut self, ino: Ino) -> Result<()> {
        let mut inode = self.read_inode(ino)?;
        if inode.links > 1 && !inode.is_dir() {
            inode.links -= 1;
            inode.ctime = self.now;
            return self.write_inode(ino, &mut inode);
        }
        self.release_inode(ino, &mut inode)
    }

    /// Removes the non-directory entry `name` from `dir`.
    pub fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        self.mutate(|fs| {
            check_name(name)?;
            let ino = fs.lookup_in(dir, name)?;
            if fs.read_inode(ino)?.is_dir() {
                return Err(Error::IsADirectory);
            }
            fs.remove_entry(dir, name)?;
            fs.drop_link(ino)
        })
    }

    pub fn unlink_path(&mut self, path: &str) -> Result<()> {
        let (dir, name) = self.parent_of(path)?;
        self.unlink(dir, &name)
    }

    /// Removes the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        self.mutate(|fs| {
            check_name(name)?;
            let ino = fs.lookup_in(dir, name)?;
            fs.directory(ino)?;
            if !fs.is_empty_dir(ino)? {
                return Err(Error::NotEmpty);
            }
            fs.remove_entry(dir, name)?;
            fs.drop_link(ino)?;
            fs.adjust_links(dir, -1)
        })
    }

    pub fn rmdir_path(&mut self, path: &str) -> Result<()> {
        let (dir, name) = self.parent_of(path)?;
        self.rmdir(dir, &name)
    }

    /// Whether `ancestor` is `dir` or one of its ancestors (following `..`).
    fn is_ancestor(&mut self, ancestor: Ino, mut dir: Ino) -> Result<bool> {
        // A `..` chain longer than the inode count is a cycle.
        for _ in 0..=self.sb.inodes_count {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INODE {
                return Ok(false);
            }
            dir = self.lookup_in(dir, b"..")?;
        }
        Err(Error::Corrupt { what: "cycle of '..' entries", at: Location::Inode(dir) })
    }

    /// Moves entry `from_name` of `from_dir` to `to_name` in `to_dir`, replacing a file there
    /// (or an empty directory, when moving a directory).
    pub fn rename(&mut self, from_dir: Ino, from_name: &[u8], to_dir: Ino, to_name: &[u8]) -> Result<()> {
        self.mutate(|fs| {
            check_name(from_name)?;
            check_name(to_name)?;
            fs.directory(to_dir)?;
            let ino = fs.lookup_in(from_dir, from_name)?;
            let inode = fs.read_inode(ino)?;
            let kind = FileKind::from_mode(inode.mode);
            let moving_dir = inode.is_dir();
            let existing = match fs.lookup_in(to_dir, to_name) {
                Ok(target) => Some(target),
                Err(Error::NotFound) => None,
                Err(e) => return Err(e),
            };
            if existing == Some(ino) {
                return Ok(());
            }
            if moving_dir && from_dir != to_dir && fs.is_ancestor(ino, to_dir)? {
                return Err(Error::InvalidArgument { what: "cannot move a directory into itself" });
            }
            if let Some(target) = existing {
                let target_is_dir = fs.read_inode(target)?.is_dir();
                match (moving_dir, target_is_dir) {
                    (true, false) => return Err(Error::NotADirectory),
                    (false, true) => return Err(Error::IsADirectory),
                    (true, true) if !fs.is_empty_dir(target)? => return Err(Error::NotEmpty),
                    _ => {}
                }
                fs.retarget_entry(to_dir, to_name, ino, kind)?;
                fs.drop_link(target)?;
                if target_is_dir {
                    // The replaced directory's `..` no longer links `to_dir`.
                    fs.adjust_links(to_dir, -1)?;
                }
            } else {
                if fs.entry_blocks_needed(to_dir, to_name.len())? > u64::from(fs.sb.free_blocks) {
                    return Err(Error::NoSpace);
                }
                if moving_dir && from_dir != to_dir && fs.read_inode(to_dir)?.links >= LINK_MAX {
                    return Err(Error::TooManyLinks);
                }
                fs.add_entry(to_dir, to_name, ino, kind)?;
            }
            fs.remove_entry(from_dir, from_name)?;
            if moving_dir && from_dir != to_dir {
                fs.retarget_entry(ino, b"..", to_dir, FileKind::Directory)?;
                fs.adjust_links(from_dir, -1)?;
                fs.adjust_links(to_dir, 1)?;
            }
            let mut moved = fs.read_inode(ino)?;
            moved.ctime = fs.now;
            fs.write_inode(ino, &mut moved)
        })
    }

    pub fn rename_path(&mut self, from: &str, to: &str) -> Result<()> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_of(to)?;
        self.rename(from_dir, &from_name, to_dir, &to_name)
    }
}

fn kind_from_dirent(file_type: u8) -> FileKind {
    match file_type {
        1 => FileKind::Regular,
        2 => FileKind::Directory,
        3 => FileKind::CharDevice,
        4 => FileKind::BlockDevice,
        5 => FileKind::Fifo,
        6 => FileKind::Socket,
        7 => FileKind::Symlink,
        _ => FileKind::Unknown,
    }
}
