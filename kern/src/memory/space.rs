//! User address spaces. Each has its own level-4 table whose higher half is the kernel's (the
//! same entries, so kernel mappings made later are shared), and whose lower half holds only the
//! process's pages, all owned by the space and freed with it.
use alloc::collections::BTreeMap;

use ::x86_64::registers::control::{Cr3, Cr3Flags};
use ::x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use ::x86_64::structures::paging::{Mapper, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate};
use ::x86_64::VirtAddr;

use super::kernel::{alloc_frame, free_frame, kernel_p4, phys_to_virt, with_tables, MapError};
use super::PAGE_SIZE;

pub struct AddressSpace {
    p4: PhysFrame,
    /// Every user page mapped, with its frame (owned by this space).
    pages: BTreeMap<u64, PhysFrame>,
}

/// Rights of a user page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRights {
    pub write: bool,
    pub exec: bool,
}

impl AddressSpace {
    pub fn new() -> Result<AddressSpace, MapError> {
        let p4 = alloc_frame().ok_or(MapError::OutOfFrames)?;
        let kernel = kernel_p4();
        // SAFETY: `p4` is a fresh frame we own; the kernel's table is only read.
        unsafe {
            let new = &mut *phys_to_virt(p4.start_address()).as_mut_ptr::<PageTable>();
            let old = &*phys_to_virt(kernel.start_address()).as_ptr::<PageTable>();
            for i in 0..256 {
                new[i].set_unused();
            }
            for i in 256..512 {
                new[i] = old[i].clone();
            }
        }
        Ok(AddressSpace { p4, pages: BTreeMap::new() })
    }

    /// Maps a zeroed page at `va` (page-aligned, lower half); mapping an already mapped page
    /// only widens its rights. Returns its frame.
    pub fn map_page(&mut self, va: u64, rights: UserRights) -> Result<PhysFrame, MapError> {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let mut flags = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        if rights.write {
            flags |= PageTableFlags::WRITABLE;
        }
        if !rights.exec {
            flags |= PageTableFlags::NO_EXECUTE;
        }
        if let Some(&frame) = self.pages.get(&page.start_address().as_u64()) {
            with_tables(self.p4, |pt, _| {
                let old = match pt.translate(page.start_address()) {
                    TranslateResult::Mapped { flags, .. } => flags,
                    _ => PageTableFlags::empty(),
                };
                let mut merged = old | (flags & (PageTableFlags::WRITABLE));
                if !flags.contains(PageTableFlags::NO_EXECUTE) {
                    merged.remove(PageTableFlags::NO_EXECUTE);
                }
                // SAFETY: the page belongs to this space; widening rights of its own page.
                if let Ok(f) = unsafe { pt.update_flags(page, merged) } {
                    f.flush();
                }
            });
            return Ok(frame);
        }
        let frame = alloc_frame().ok_or(MapError::OutOfFrames)?;
        // SAFETY: fresh frame, reached through the physical window.
        unsafe { core::ptr::write_bytes(phys_to_virt(frame.start_address()).as_mut_ptr::<u8>(), 0, PAGE_SIZE as usize) };
        let parent = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        let r = with_tables(self.p4, |pt, frames| {
            // SAFETY: a fresh frame mapped at a lower-half page of this space only.
            unsafe { pt.map_to_with_table_flags(page, frame, flags, parent, frames) }.map(|f| f.flush())
        });
        match r {
            Ok(()) => {
                self.pages.insert(page.start_address().as_u64(), frame);
                Ok(frame)
            }
            Err(e) => {
                let _ = free_frame(frame);
                Err(match e {
                    MapToError::FrameAllocationFailed => MapError::OutOfFrames,
                    MapToError::PageAlreadyMapped(_) => MapError::AlreadyMapped(page.start_address()),
                    MapToError::ParentEntryHugePage => MapError::HugePage(page.start_address()),
                })
            }
        }
    }

    /// Unmaps and frees the page at `va`; false if it was not mapped.
    pub fn unmap_page(&mut self, va: u64) -> bool {
        let Some(frame) = self.pages.remove(&va) else { return false };
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        with_tables(self.p4, |pt, _| {
            if let Ok((_, f)) = pt.unmap(page) {
                f.flush();
            }
        });
        let _ = free_frame(frame);
        true
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
        // SAFETY: the table maps the kernel's higher half exactly as the current one does.
        unsafe { Cr3::write(self.p4, Cr3Flags::empty()) };
    }

    pub fn is_active(&self) -> bool {
        Cr3::read().0 == self.p4
    }
}

/// Switches to the kernel's own address space (no user pages).
pub fn activate_kernel_space() {
    // SAFETY: the kernel's table maps everything the kernel uses.
    unsafe { Cr3::write(kernel_p4(), Cr3Flags::empty()) };
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        if self.is_active() {
            activate_kernel_space();
        }
        for (_, frame) in core::mem::take(&mut self.pages) {
            let _ = free_frame(frame);
        }
        // Free the lower half's page tables, then the level-4 table.
        // SAFETY: the space is not active and nothing else uses its tables.
        unsafe {
            let p4 = &mut *phys_to_virt(self.p4.start_address()).as_mut_ptr::<PageTable>();
            for i in 0..256 {
                if let Ok(f3) = p4[i].frame() {
                    free_table(f3, 3);
                }
                p4[i].set_unused();
            }
        }
        let _ = free_frame(self.p4);
    }
}

/// Frees a page table of `level` (3, 2 or 1) and the tables below it (not the leaf frames).
unsafe fn free_table(frame: PhysFrame, level: u8) {
    if level > 1 {
        // SAFETY: the caller owns the table; it is reached through the physical window.
        let table = unsafe { &*phys_to_virt(frame.start_address()).as_ptr::<PageTable>() };
        for e in table.iter() {
            if e.flags().contains(PageTableFlags::PRESENT) && !e.flags().contains(PageTableFlags::HUGE_PAGE) {
                if let Ok(f) = e.frame() {
                    // SAFETY: a child table of a table we own.
                    unsafe { free_table(f, level - 1) };
                }
            }
        }
    }
    let _ = free_frame(frame);
}
