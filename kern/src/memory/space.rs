//! User address spaces. Each has its own level-4 table whose higher half is the kernel's (the
//! same entries, so kernel mappings made later are shared), and whose lower half holds only the
//! process's pages, all owned by the space and freed with it.
use alloc::collections::BTreeMap;

use ::x86_64::structures::paging::PhysFrame;
use ::x86_64::VirtAddr;

use super::kernel::{alloc_frame, free_frame, kernel_root, phys_to_virt, MapError};
use super::PAGE_SIZE;
use crate::arch::paging::{self, PageInfo, Rights, Root};

pub struct AddressSpace {
    root: Root,
    /// Every user page mapped, with its frame (owned by this space).
    pages: BTreeMap<u64, PhysFrame>,
}

/// Rights of a user page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRights {
    pub write: bool,
    pub exec: bool,
}

impl UserRights {
    fn rights(self) -> Rights {
        Rights { write: self.write, exec: self.exec, user: true, device: false }
    }
}

impl AddressSpace {
    pub fn new() -> Result<AddressSpace, MapError> {
        Ok(AddressSpace { root: Root::new_user(kernel_root())?, pages: BTreeMap::new() })
    }

    /// Maps a zeroed page at `va` (page-aligned, lower half); mapping an already mapped page
    /// only widens its rights. Returns its frame.
    pub fn map_page(&mut self, va: u64, rights: UserRights) -> Result<PhysFrame, MapError> {
        let page = va & !(PAGE_SIZE - 1);
        let addr = VirtAddr::try_new(page).map_err(|_| MapError::NotMapped(VirtAddr::zero()))?;
        if let Some(&frame) = self.pages.get(&page) {
            if let Some(old) = paging::query(self.root, addr) {
                let widened = Rights { write: old.rights.write || rights.write, exec: old.rights.exec || rights.exec, ..old.rights };
                paging::protect(self.root, addr, widened)?;
            }
            return Ok(frame);
        }
        let frame = alloc_frame().ok_or(MapError::OutOfFrames)?;
        // SAFETY: fresh frame, reached through the physical window.
        unsafe { core::ptr::write_bytes(phys_to_virt(frame.start_address()).as_mut_ptr::<u8>(), 0, PAGE_SIZE as usize) };
        match paging::map(self.root, addr, frame, rights.rights()) {
            Ok(()) => {
                self.pages.insert(page, frame);
                Ok(frame)
            }
            Err(e) => {
                let _ = free_frame(frame);
                Err(e)
            }
        }
    }

    /// The page at `va` as the tables describe it (rights, accessed, dirty), if mapped.
    pub fn page_info(&self, va: u64) -> Option<PageInfo> {
        paging::query(self.root, VirtAddr::try_new(va).ok()?)
    }

    /// Test-and-clear of the page's hardware accessed (referenced) bit.
    pub fn take_accessed(&self, va: u64) -> Option<bool> {
        paging::take_accessed(self.root, VirtAddr::try_new(va).ok()?)
    }

    /// Test-and-clear of the page's hardware dirty bit.
    pub fn take_dirty(&self, va: u64) -> Option<bool> {
        paging::take_dirty(self.root, VirtAddr::try_new(va).ok()?)
    }

    /// Unmaps and frees the page at `va`; false if it was not mapped.
    pub fn unmap_page(&mut self, va: u64) -> bool {
        let Some(frame) = self.pages.remove(&va) else { return false };
        if let Ok(addr) = VirtAddr::try_new(va) {
            let _ = paging::unmap(self.root, addr);
        }
        let _ = free_frame(frame);
        true
    }

    /// Copies the page at `va` (mapped) into `out` (one page long) through the physical window.
    pub fn read_page(&self, va: u64, out: &mut [u8]) -> Result<(), MapError> {
        let page = va & !(PAGE_SIZE - 1);
        let frame = self.pages.get(&page).ok_or(MapError::NotMapped(VirtAddr::new(page)))?;
        let n = out.len().min(PAGE_SIZE as usize);
        // SAFETY: the frame belongs to this space and is a whole page long.
        unsafe {
            let src = phys_to_virt(frame.start_address()).as_ptr::<u8>();
            core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), n);
        }
        Ok(())
    }

    pub fn is_mapped(&self, va: u64) -> bool {
        self.pages.contains_key(&(va & !(PAGE_SIZE - 1)))
    }

    /// Copies `bytes` to user address `va` of this space (mapped pages only) through the physical
    /// window, whether or not the space is active.
    pub fn write(&self, va: u64, bytes: &[u8]) -> Result<(), MapError> {
        let mut done = 0usize;
        while done < bytes.len() {
            let addr = va + done as u64;
            let page = addr & !(PAGE_SIZE - 1);
            let frame = self.pages.get(&page).ok_or(MapError::NotMapped(VirtAddr::new(page)))?;
            let off = (addr - page) as usize;
            let n = (PAGE_SIZE as usize - off).min(bytes.len() - done);
            // SAFETY: the frame belongs to this space; the range stays inside it.
            unsafe {
                let dst = phys_to_virt(frame.start_address()).as_mut_ptr::<u8>().add(off);
                core::ptr::copy_nonoverlapping(bytes.as_ptr().add(done), dst, n);
            }
            done += n;
        }
        Ok(())
    }

    /// Frames held by this space's pages.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Makes this the active address space.
    pub fn activate(&self) {
        // SAFETY: the space's higher half is the kernel's (`Root::new_user`).
        unsafe { self.root.activate() };
    }

    pub fn is_active(&self) -> bool {
        self.root.is_active()
    }
}

/// The clock reads the hardware's bits of a process's pages through its space.
impl crate::vm::clock::PageBits for AddressSpace {
    fn take_accessed(&mut self, va: u64) -> bool {
        AddressSpace::take_accessed(self, va).unwrap_or(false)
    }

    fn accessed(&self, va: u64) -> bool {
        self.page_info(va).is_some_and(|i| i.accessed)
    }

    fn dirty(&self, va: u64) -> bool {
        self.page_info(va).is_some_and(|i| i.dirty)
    }
}

/// Switches to the kernel's own address space (no user pages).
pub fn activate_kernel_space() {
    // SAFETY: the kernel's table maps everything the kernel uses.
    unsafe { kernel_root().activate() };
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        if self.is_active() {
            activate_kernel_space();
        }
        for (_, frame) in core::mem::take(&mut self.pages) {
            let _ = free_frame(frame);
        }
        // SAFETY: the space is not active (switched away above) and nothing uses its tables.
        unsafe { self.root.free_user() };
    }
}
