//! A deterministic in-memory [`Host`] implementing every callable of the ABI table, for the
//! interpreter's tests and for differential tests of the JIT (which must see the same
//! callables behave the same way).
//!
//! Behaviour, chosen to exercise every way a callable can fail:
//! - handles with raw value 0 are invalid (`CallableFailed(BAD_HANDLE)`);
//! - `fs.file_size(f)` is `raw * 4096`; `fs.block_size` is 1024; `fs.block_cached(f, b)` is
//!   `b % 3 == 0` and fails `BAD_ARGUMENT` for a negative block;
//! - `lock.get(n)` for `0 <= n < 16` gives `handle<lock>:n+1`; acquiring a held lock or
//!   releasing a free one fails `LOCK_STATE`;
//! - `mem.alloc(n)` allocates from a budget of [`MockHost::MEM_BUDGET`] bytes, beyond which it
//!   aborts `ResourceLimit`;
//! - counters `0 <= n < 16` start at 0; `time.now` advances 1000 per call;
//!   `vm.page_referenced(a)` is bit 12 of `a`; `debug.trace` records its argument.

use alloc::vec::Vec;

use crate::abi::{errors, Callable};
use crate::abort::AbortReason;
use crate::interp::{DataValue, Host};
use crate::types::HandleKind;

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct MockHost {
    /// Values passed to `debug.trace`, in order.
    pub trace: Vec<i64>,
    /// The 16 counters.
    pub counters: [i64; 16],
    /// Raw lock handles currently held.
    pub held: Vec<u64>,
    /// Live allocations: (number, size).
    pub allocations: Vec<(i32, i32)>,
    /// Next allocation number.
    pub next_alloc: i32,
    /// The clock.
    pub now: i64,
}

impl MockHost {
    /// Bytes `mem.alloc` can hand out in total.
    pub const MEM_BUDGET: i64 = 64 * 1024;
}

fn int(v: Option<&DataValue>) -> i64 {
    v.map_or(0, |v| v.as_i64())
}

fn handle(v: Option<&DataValue>) -> Result<u64, AbortReason> {
    match v {
        Some(DataValue::Handle(_, h)) if *h != 0 => Ok(*h),
        _ => Err(AbortReason::CallableFailed(errors::BAD_HANDLE)),
    }
}

impl Host for MockHost {
    fn call(&mut self, c: &'static Callable, args: &[DataValue]) -> Result<Option<DataValue>, AbortReason> {
        let bad = AbortReason::CallableFailed(errors::BAD_ARGUMENT);
        let counter = |n: i64| usize::try_from(n).ok().filter(|&n| n < 16).ok_or(bad);
        Ok(Some(match c.name {
            "fs.file_size" => DataValue::I64(handle(args.first())? as i64 * 4096),
            "fs.block_size" => {
                handle(args.first())?;
                DataValue::I32(1024)
            }
            "fs.block_cached" => {
                handle(args.first())?;
                let b = int(args.get(1));
                if b < 0 {
                    return Err(bad);
                }
                DataValue::I8(i8::from(b % 3 == 0))
            }
            "lock.get" => {
                let n = int(args.first());
                if !(0..16).contains(&n) {
                    return Err(bad);
                }
                DataValue::Handle(HandleKind::Lock, n as u64 + 1)
            }
            "lock.acquire" => {
                let h = handle(args.first())?;
                if self.held.contains(&h) {
                    return Err(AbortReason::CallableFailed(errors::LOCK_STATE));
                }
                self.held.push(h);
                DataValue::I32(0)
            }
            "lock.release" => {
                let h = handle(args.first())?;
                let Some(i) = self.held.iter().position(|&x| x == h) else {
                    return Err(AbortReason::CallableFailed(errors::LOCK_STATE));
                };
                self.held.swap_remove(i);
                DataValue::I32(0)
            }
            "mem.alloc" => {
                let n = int(args.first());
                if n < 0 {
                    return Err(bad);
                }
                let used: i64 = self.allocations.iter().map(|a| i64::from(a.1)).sum();
                if used + n > Self::MEM_BUDGET {
                    return Err(AbortReason::ResourceLimit);
                }
                self.next_alloc += 1;
                self.allocations.push((self.next_alloc, n as i32));
                DataValue::I32(self.next_alloc)
            }
            "mem.free" => {
                let id = int(args.first());
                let Some(i) = self.allocations.iter().position(|a| i64::from(a.0) == id) else {
                    return Err(bad);
                };
                self.allocations.swap_remove(i);
                DataValue::I32(0)
            }
            "kern.counter_get" => DataValue::I64(self.counters[counter(int(args.first()))?]),
            "kern.counter_add" => {
                let n = counter(int(args.first()))?;
                self.counters[n] = self.counters[n].wrapping_add(int(args.get(1)));
                DataValue::I64(self.counters[n])
            }
            "debug.trace" => {
                self.trace.push(int(args.first()));
                return Ok(None);
            }
            "time.now" => {
                self.now += 1000;
                DataValue::I64(self.now)
            }
            "vm.page_referenced" => DataValue::I8(((int(args.first()) >> 12) & 1) as i8),
            _ => return Err(AbortReason::HostContract),
        }))
    }
}
