//! Memory system calls: map (demand-zero memory), unmap.
use sysabi::{Error, Sys};

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
        _ => Err(Error::NoSys),
    }
}
