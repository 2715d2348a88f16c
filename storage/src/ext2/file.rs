//! File data: the block map (direct, single, double and triple indirect), read, write with
//! allocation, truncate.
//!
//! A file block's path through the map has a fixed depth (0 to 3), so no walk can loop; a cycle of
//! indirect blocks shows up, when freed, as a block freed twice.

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

use super::layout::{u32_at, Inode, BLOCK_POINTERS, DIRECT_BLOCKS};
use super::{BlockAccess, Error, Ext2, FileKind, Ino, Location, Result};

/// Where a file block's pointer lives: the root slot in `i_block`, the depth of indirection and
/// the index at each level.
struct MapPath {
    root: usize,
    depth: usize,
    index: [u64; 3],
    /// File block number relative to the first block the root slot maps.
    relative: u64,
}

impl<B: BlockAccess> Ext2<B> {
    fn map_path(&self, file_block: u64) -> Result<MapPath> {
        let p = self.pointers_per_block;
        let direct = DIRECT_BLOCKS as u64;
        if file_block < direct {
            return Ok(MapPath { root: file_block as usize, depth: 0, index: [0; 3], relative: 0 });
        }
        let mut rel = file_block - direct;
        if rel < p {
            return Ok(MapPath { root: 12, depth: 1, index: [rel, 0, 0], relative: rel });
        }
        rel -= p;
        if rel < p * p {
            return Ok(MapPath { root: 13, depth: 2, index: [rel / p, rel % p, 0], relative: rel });
        }
        rel -= p * p;
        if rel < p * p * p {
            return Ok(MapPath { root: 14, depth: 3, index: [rel / (p * p), (rel / p) % p, rel % p], relative: rel });
        }
        Err(Error::FileTooLarge)
    }

    /// Blocks a file can address.
    fn max_file_blocks(&self) -> u64 {
        let p = self.pointers_per_block;
        DIRECT_BLOCKS as u64 + p + p * p + p * p * p
    }

    fn read_pointer(&mut self, block: u64, index: u64) -> Result<u64> {
        let mut raw = [0u8; 4];
        self.dev.read_at(block, index as usize * 4, &mut raw)?;
        Ok(u64::from(u32::from_le_bytes(raw)))
    }

    fn write_pointer(&mut self, block: u64, index: u64, value: u64) -> Result<()> {
        self.dev.write_at(block, index as usize * 4, &(value as u32).to_le_bytes())?;
        Ok(())
    }

    /// The disk block holding file block `file_block`, or `None` for a hole.
    pub(super) fn map_block(&mut self, ino: Ino, inode: &Inode, file_block: u64) -> Result<Option<u64>> {
        let at = Location::Inode(ino);
        let path = match self.map_path(file_block) {
            Ok(path) => path,
            Err(Error::FileTooLarge) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut pointer = u64::from(inode.block[path.root]);
        for &index in &path.index[..path.depth] {
            if pointer == 0 {
                return Ok(None);
            }
            self.check_block(pointer, at)?;
            pointer = self.read_pointer(pointer, index)?;
        }
        if pointer == 0 {
            return Ok(None);
        }
        Ok(Some(self.check_block(pointer, at)?))
    }

    /// The block map read-ahead uses: file block -> disk block, `None` for a hole (or past what
    /// the map can address).
    pub fn block_map(&mut self, ino: Ino, file_block: u64) -> Result<Option<u64>> {
        let inode = self.read_inode(ino)?;
        if !inode.has_block_pointers(self.block_size) {
            return Err(Error::InvalidArgument { what: "inode has no block map" });
        }
        self.map_block(ino, &inode, file_block)
    }

    /// `block_map` without any I/O: `Ok(None)` when the answer needs a block (the inode's, or an
    /// indirect block) that is not resident; `Ok(Some(None))` for a hole.
    pub fn block_map_resident(&mut self, ino: Ino, file_block: u64) -> Result<Option<Option<u64>>> {
        let Some(inode) = self.read_inode_resident(ino)? else { return Ok(None) };
        if !inode.has_block_pointers(self.block_size) {
            return Err(Error::InvalidArgument { what: "inode has no block map" });
        }
        let at = Location::Inode(ino);
        let path = match self.map_path(file_block) {
            Ok(path) => path,
            Err(Error::FileTooLarge) => return Ok(Some(None)),
            Err(e) => return Err(e),
        };
        let mut pointer = u64::from(inode.block[path.root]);
        for &index in &path.index[..path.depth] {
            if pointer == 0 {
                return Ok(Some(None));
            }
            self.check_block(pointer, at)?;
            let mut raw = [0u8; 4];
            match self.dev.read_resident(pointer, index as usize * 4, &mut raw) {
                Some(r) => r?,
                None => return Ok(None),
            }
            pointer = u64::from(u32::from_le_bytes(raw));
        }
        if pointer == 0 {
            return Ok(Some(None));
        }
        Ok(Some(Some(self.check_block(pointer, at)?)))
    }

    /// Starts an asynchronous read of file block `file_block` if it is mapped and not cached.
    /// Returns whether a read was issued.
    pub fn prefetch_file_block(&mut self, ino: Ino, file_block: u64) -> Result<bool> {
        match self.block_map(ino, file_block)? {
            Some(block) => Ok(self.dev.prefetch(block)?),
            None => Ok(false),
        }
    }

    /// Like `map_block`, allocating the data block and any missing indirect blocks. Returns the
    /// block and whether the data block is new (its old contents are garbage).
    pub(super) fn map_block_alloc(&mut self, ino: Ino, inode: &mut Inode, file_block: u64, goal: &mut u64) -> Result<(u64, bool)> {
        let at = Location::Inode(ino);
        let sectors = (self.block_size / 512) as u32;
        let path = self.map_path(file_block)?;
        let mut fresh = false;
        let mut pointer = u64::from(inode.block[path.root]);
        if pointer == 0 {
            pointer = self.alloc_block(*goal)?;
            inode.block[path.root] = pointer as u32;
            inode.blocks = inode.blocks.saturating_add(sectors);
            if path.depth > 0 {
                self.dev.zero_block(pointer)?;
            } else {
                fresh = true;
            }
        } else {
            self.check_block(pointer, at)?;
        }
        for level in 0..path.depth {
            let parent = pointer;
            let child = self.read_pointer(parent, path.index[level])?;
            if child == 0 {
                let new = self.alloc_block(parent + 1)?;
                self.write_pointer(parent, path.index[level], new)?;
                inode.blocks = inode.blocks.saturating_add(sectors);
                if level + 1 < path.depth {
                    self.dev.zero_block(new)?;
                } else {
                    fresh = true;
                }
                pointer = new;
            } else {
                pointer = self.check_block(child, at)?;
            }
        }
        *goal = pointer + 1;
        Ok((pointer, fresh))
    }

    /// Blocks (data and indirect) that mapping file blocks `first..=last` would allocate.
    pub(super) fn blocks_needed(&mut self, ino: Ino, inode: &Inode, first: u64, last: u64) -> Result<u64> {
        let at = Location::Inode(ino);
        let p = self.pointers_per_block;
        let mut needed = 0u64;
        // Missing indirect blocks already counted: (root slot, level, which node at that level).
        let mut counted: BTreeSet<(usize, usize, u64)> = BTreeSet::new();
        for file_block in first..=last {
            let path = self.map_path(file_block)?;
            let mut pointer = u64::from(inode.block[path.root]);
            let mut missing = pointer == 0;
            for level in 0..path.depth {
                if missing {
                    let span = p.pow((path.depth - level) as u32);
                    if counted.insert((path.root, level, path.relative / span)) {
                        needed += 1;
                    }
                } else {
                    self.check_block(pointer, at)?;
                    pointer = self.read_pointer(pointer, path.index[level])?;
                    missing = pointer == 0;
                }
            }
            if missing {
                needed += 1;
            }
        }
        Ok(needed)
    }

    /// A file of 2 GiB or more needs the `large_file` feature (i_size_high) in the superblock.
    fn note_large_file(&mut self, size: u64) {
        if size > 0x7FFF_FFFF && self.sb.ro_compat & super::feature::RO_COMPAT_LARGE_FILE == 0 {
            self.sb.ro_compat |= super::feature::RO_COMPAT_LARGE_FILE;
            self.sb_dirty = true;
        }
    }

    fn regular_file(&mut self, ino: Ino) -> Result<Inode> {
        let inode = self.read_inode(ino)?;
        match FileKind::from_mode(inode.mode) {
            FileKind::Regular => Ok(inode),
            FileKind::Directory => Err(Error::IsADirectory),
            _ => Err(Error::InvalidArgument { what: "not a regular file" }),
        }
    }

    /// Reads file data at `offset` into `buf`; returns the bytes read (0 at or past the end).
    pub fn read(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let inode = self.regular_file(ino)?;
        if offset >= inode.size || buf.is_empty() {
            return Ok(0);
        }
        let len = (inode.size - offset).min(buf.len() as u64) as usize;
        let bs = self.block_size as u64;
        let mut done = 0;
        while done < len {
            let pos = offset + done as u64;
            let in_block = (pos % bs) as usize;
            let chunk = (self.block_size - in_block).min(len - done);
            let out = &mut buf[done..done + chunk];
            match self.map_block(ino, &inode, pos / bs)? {
                Some(block) => self.dev.read_at(block, in_block, out)?,
                None => out.fill(0),
            }
            done += chunk;
        }
        Ok(len)
    }

    /// Writes `data` at `offset`, allocating blocks; the file grows as needed. Either all of it is
    /// written or, for lack of space, nothing (`NoSpace`).
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize> {
        self.mutate(|fs| fs.write_inner(ino, offset, data))
    }

    fn write_inner(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize> {
        let mut inode = self.regular_file(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let bs = self.block_size as u64;
        let end = offset.checked_add(data.len() as u64).ok_or(Error::FileTooLarge)?;
        let first = offset / bs;
        let last = (end - 1) / bs;
        if last >= self.max_file_blocks() {
            return Err(Error::FileTooLarge);
        }
        let needed = self.blocks_needed(ino, &inode, first, last)?;
        if needed > u64::from(self.sb.free_blocks) {
            return Err(Error::NoSpace);
        }
        let sectors_needed = needed * bs / 512;
        if u64::from(inode.blocks) + sectors_needed > u64::from(u32::MAX) {
            return Err(Error::FileTooLarge);
        }
        let group_start = u64::from(self.sb.first_data_block)
            + u64::from(self.group_of_inode(ino)) * u64::from(self.sb.blocks_per_group);
        let mut goal = match first.checked_sub(1) {
            Some(prev) => self.map_block(ino, &inode, prev)?.map_or(group_start, |b| b + 1),
            None => group_start,
        };
        let result = self.write_blocks(ino, &mut inode, offset, data, &mut goal);
        // Whatever happened, the inode must account for the blocks now mapped.
        if result.is_ok() {
            inode.size = inode.size.max(end);
            inode.mtime = self.now;
            inode.ctime = self.now;
            self.note_large_file(inode.size);
        }
        self.write_inode(ino, &mut inode)?;
        result.map(|()| data.len())
    }

    fn write_blocks(&mut self, ino: Ino, inode: &mut Inode, offset: u64, data: &[u8], goal: &mut u64) -> Result<()> {
        let bs = self.block_size as u64;
        let mut done = 0;
        let mut scratch = Vec::new();
        while done < data.len() {
            let pos = offset + done as u64;
            let in_block = (pos % bs) as usize;
            let chunk = (self.block_size - in_block).min(data.len() - done);
            let bytes = &data[done..done + chunk];
            let (block, fresh) = self.map_block_alloc(ino, inode, pos / bs, goal)?;
            if chunk == self.block_size || !fresh {
                self.dev.write_at(block, in_block, bytes)?;
            } else {
                // A new block partly written: the rest must read as zeros, not old data.
                scratch.clear();
                scratch.resize(self.block_size, 0);
                scratch[in_block..in_block + chunk].copy_from_slice(bytes);
                self.dev.write_at(block, 0, &scratch)?;
            }
            done += chunk;
        }
        Ok(())
    }

    /// Sets a regular file's size: shrinking frees the blocks past the end (indirect blocks
    /// included); growing leaves a hole.
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<()> {
        self.mutate(|fs| {
            let mut inode = fs.regular_file(ino)?;
            let bs = fs.block_size as u64;
            if size.div_ceil(bs) > fs.max_file_blocks() {
                return Err(Error::FileTooLarge);
            }
            if size < inode.size {
                let keep = size.div_ceil(bs);
                let result = fs.free_blocks_from(ino, &mut inode, keep);
                if result.is_ok() && !size.is_multiple_of(bs) {
                    // Bytes past the new end in the last block must read as zeros if it grows again.
                    if let Some(block) = fs.map_block(ino, &inode, size / bs)? {
                        let tail = vec![0; (bs - size % bs) as usize];
                        fs.dev.write_at(block, (size % bs) as usize, &tail)?;
                    }
                }
                if let Err(e) = result {
                    fs.write_inode(ino, &mut inode)?;
                    return Err(e);
                }
            }
            inode.size = size;
            fs.note_large_file(size);
            inode.mtime = fs.now;
            inode.ctime = fs.now;
            fs.write_inode(ino, &mut inode)
        })
    }

    /// Frees every block mapping file blocks `keep..`, and indirect blocks left empty.
    pub(super) fn free_blocks_from(&mut self, ino: Ino, inode: &mut Inode, keep: u64) -> Result<()> {
        let at = Location::Inode(ino);
        let sectors = (self.block_size / 512) as u32;
        let p = self.pointers_per_block;
        for i in (keep.min(DIRECT_BLOCKS as u64) as usize)..DIRECT_BLOCKS {
            let block = u64::from(inode.block[i]);
            if block != 0 {
                self.free_block(block, at)?;
                inode.block[i] = 0;
                inode.blocks = inode.blocks.saturating_sub(sectors);
            }
        }
        let mut base = DIRECT_BLOCKS as u64;
        for (root, depth) in [(12usize, 1u32), (13, 2), (14, 3)] {
            let span = p.pow(depth);
            let root_block = u64::from(inode.block[root]);
            if root_block != 0 && keep < base + span {
                self.check_block(root_block, at)?;
                let keep_here = keep.saturating_sub(base);
                self.free_subtree(ino, inode, root_block, depth, keep_here)?;
                if keep_here == 0 {
                    self.free_block(root_block, at)?;
                    inode.block[root] = 0;
                    inode.blocks = inode.blocks.saturating_sub(sectors);
                }
            }
            base += span;
        }
        Ok(())
    }

    /// Frees what indirect block `node` (mapping `p^depth` file blocks) maps past its first
    /// `keep` file blocks. The node itself is the caller's.
    fn free_subtree(&mut self, ino: Ino, inode: &mut Inode, node: u64, depth: u32, keep: u64) -> Result<()> {
        let at = Location::Inode(ino);
        let sectors = (self.block_size / 512) as u32;
        let child_span = self.pointers_per_block.pow(depth - 1);
        let mut pointers = vec![0u8; self.block_size];
        self.dev.read_at(node, 0, &mut pointers)?;
        let mut changed = false;
        let first = (keep / child_span) as usize;
        for i in first..self.pointers_per_block as usize {
            let child = u64::from(u32_at(&pointers, i * 4));
            if child == 0 {
                continue;
            }
            self.check_block(child, at)?;
            let child_keep = keep.saturating_sub(i as u64 * child_span);
            if depth > 1 {
                self.free_subtree(ino, inode, child, depth - 1, child_keep)?;
            }
            if child_keep == 0 {
                self.free_block(child, at)?;
                inode.blocks = inode.blocks.saturating_sub(sectors);
                pointers[i * 4..i * 4 + 4].fill(0);
                changed = true;
            }
        }
        if changed && keep > 0 {
            self.dev.write_at(node, 0, &pointers)?;
        }
        Ok(())
    }

    /// Every block a file occupies (data and indirect), bounded by its `i_blocks`.
    pub(super) fn file_block_list(&mut self, ino: Ino, inode: &Inode) -> Result<Vec<u64>> {
        let at = Location::Inode(ino);
        let mut blocks = Vec::new();
        if !inode.has_block_pointers(self.block_size) {
            return Ok(blocks);
        }
        // A corrupt i_blocks must not size this list beyond what the file system can hold.
        let limit = (inode.blocks / (self.block_size / 512) as u32).min(self.sb.blocks_count) as usize + 1;
        let mut stack: Vec<(u64, u32)> = Vec::new();
        for (i, &b) in inode.block.iter().enumerate().take(BLOCK_POINTERS) {
            if b != 0 {
                let depth = i.saturating_sub(DIRECT_BLOCKS - 1) as u32;
                stack.push((self.check_block(u64::from(b), at)?, depth));
            }
        }
        let mut pointers = vec![0u8; self.block_size];
        while let Some((block, depth)) = stack.pop() {
            blocks.push(block);
            if blocks.len() > limit {
                return Err(Error::Corrupt { what: "block map larger than i_blocks", at });
            }
            if depth > 0 {
                self.dev.read_at(block, 0, &mut pointers)?;
                for i in 0..self.pointers_per_block as usize {
                    let child = u64::from(u32_at(&pointers, i * 4));
                    if child != 0 {
                        stack.push((self.check_block(child, at)?, depth - 1));
                    }
                }
            }
        }
        Ok(blocks)
    }

    /// Frees all of an unlinked inode's storage and the inode itself.
    pub(super) fn release_inode(&mut self, ino: Ino, inode: &mut Inode) -> Result<()> {
        let at = Location::Inode(ino);
        let was_dir = inode.is_dir();
        if inode.has_block_pointers(self.block_size) {
            self.free_blocks_from(ino, inode, 0)?;
        }
        if inode.file_acl != 0 {
            // An extended-attribute block may be shared: drop one reference.
            let block = self.check_block(u64::from(inode.file_acl), at)?;
            let mut refs = [0u8; 4];
            self.dev.read_at(block, 4, &mut refs)?;
            let count = u32::from_le_bytes(refs);
            if count > 1 {
                self.dev.write_at(block, 4, &(count - 1).to_le_bytes())?;
            } else {
                self.free_block(block, at)?;
            }
            inode.file_acl = 0;
            inode.blocks = inode.blocks.saturating_sub((self.block_size / 512) as u32);
        }
        inode.links = 0;
        inode.size = 0;
        inode.dtime = self.now.max(1);
        inode.ctime = self.now;
        self.write_inode(ino, inode)?;
        self.free_inode(ino, was_dir)
    }
}
