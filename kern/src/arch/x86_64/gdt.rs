//! Segments: the GDT with kernel and user segments, and the TSS whose interrupt stack table gives
//! the double-fault, page-fault and NMI handlers stacks of their own (so that a kernel stack
//! overflow still reaches a handler that can report it).
use ::x86_64::VirtAddr;
use ::x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use ::x86_64::instructions::tables::load_tss;
use ::x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use ::x86_64::structures::tss::TaskStateSegment;
use spin::Once;


/// Interrupt-stack-table slots (0-based, as the `x86_64` crate counts them).
pub const IST_DOUBLE_FAULT: u16 = 0;
pub const IST_PAGE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;

const IST_STACK_SIZE: usize = 32 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_SIZE]) }; 3];

pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    pub tss: SegmentSelector,
}

/// The TSS is written after boot (the kernel stack of the running thread, `rsp0`), so it is a
/// mutable static touched only with interrupts disabled on this single CPU.
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

pub fn init() {
    // SAFETY: runs once at boot before interrupts are enabled; nothing else refers to TSS yet.
    let tss: &'static TaskStateSegment = unsafe {
        let tss = &mut *core::ptr::addr_of_mut!(TSS);
        for (slot, index) in [IST_DOUBLE_FAULT, IST_PAGE_FAULT, IST_NMI].into_iter().enumerate() {
            // Only the address of the stack is taken; the CPU alone uses it, through one slot.
            let base = core::ptr::addr_of!(IST_STACKS[slot]) as u64;
            tss.interrupt_stack_table[index as usize] = VirtAddr::new(base + IST_STACK_SIZE as u64);
        }
        tss
    };
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        // sysret requires user data right before user code.
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { kernel_code, kernel_data, user_data, user_code, tss })
    });
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded, which lives forever in a static.
    unsafe {
        CS::set_reg(sel.kernel_code);
        SS::set_reg(sel.kernel_data);
        DS::set_reg(sel.kernel_data);
        ES::set_reg(sel.kernel_data);
        load_tss(sel.tss);
    }
}

/// Sets the stack the CPU switches to when an interrupt or exception arrives in user mode: the
/// kernel stack of the thread about to run.
pub fn set_kernel_stack(top: u64) {
    super::without_interrupts(|| {
        // SAFETY: a single aligned store into the TSS with interrupts off on the only CPU; the CPU reads `rsp0` only on a privilege change, which cannot happen during the store.
        unsafe { (*core::ptr::addr_of_mut!(TSS)).privilege_stack_table[0] = VirtAddr::new(top) };
    });
}

pub fn selectors() -> &'static Selectors {
    &GDT.get().expect("gdt::init has run").1
}
