//! Memory system calls: map (demand-zero memory), unmap, the resident-set limit with the
//! paging counters (`vm_limit`), marking a range (`vm_mark`).
use sysabi::{Error, Sys, VmStats};

use super::uaccess::copy_to_user;
use crate::task;

pub(super) fn call(sys: Sys, a: [u64; 6]) -> Result<u64, Error> {
    match sys {
        Sys::Map => {
            if a[1] != 0 {
                return Err(Error::InvalidArgument);
            }
            task::map_memory(a[0])
        }
        Sys::Unmap => task::unmap_memory(a[0], a[1]).map(|()| 0),
        Sys::VmLimit => {
            let size = core::mem::size_of::<VmStats>() as u64;
            if a[1] != 0 && a[2] < size {
                return Err(Error::BufferTooSmall);
            }
            let (old, stats) = task::vm_limit(a[0])?;
            if a[1] != 0 {
                copy_to_user(a[1], &stats_bytes(&stats))?;
            }
            Ok(old)
        }
        Sys::VmMark => match a[2] {
            0 | 1 => task::vm_mark(a[0], a[1], a[2] == 1).map(|()| 0),
            _ => Err(Error::InvalidArgument),
        },
        _ => Err(Error::NoSys),
    }
}

/// `VmStats` as the user reads it: its fields in order, little-endian.
fn stats_bytes(s: &VmStats) -> [u8; core::mem::size_of::<VmStats>()] {
    let fields = [
        s.limit,
        s.ceiling,
        s.resident,
        s.frames,
        s.faults,
        s.zero_fills,
        s.swap_ins,
        s.marked_swap_ins,
        s.evictions,
        s.swap_outs,
        s.graft_choices,
        s.graft_aborts,
        s.swap_slots,
        s.system_swap_slots,
        s.system_swap_capacity,
        s.free_frames,
    ];
    let mut out = [0u8; core::mem::size_of::<VmStats>()];
    for (chunk, f) in out.as_chunks_mut::<8>().0.iter_mut().zip(fields) {
        *chunk = f.to_le_bytes();
    }
    out
}
