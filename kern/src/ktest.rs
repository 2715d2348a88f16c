//! The in-kernel test harness.
//!
//! Tests sit next to the code they test, declared with `ktest!`; each becomes a record in the
//! `ktests` linker section, and the test build of the kernel (feature `ktest`) runs them all at
//! boot, printing `test NAME ... ok` per test and a summary line, then exits QEMU with success
//! only if none failed. A test returns `TestResult`; `check!` and `check_eq!` fail it without
//! stopping the run. A panic stops the run, and the panic handler reports the running test.
use alloc::string::String;
use core::fmt;

/// Where and why a test failed.
#[derive(Debug)]
pub struct TestFailure {
    pub message: String,
    pub file: &'static str,
    pub line: u32,
}

impl fmt::Display for TestFailure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({}:{})", self.message, self.file, self.line)
    }
}

pub type TestResult = Result<(), TestFailure>;

/// One registered test.
#[repr(C)]
pub struct KTest {
    pub name: &'static str,
    pub run: fn() -> TestResult,
}

/// Declares an in-kernel test: `ktest! { fn name() -> TestResult { ...; Ok(()) } }`.
/// Compiled only into the test build.
#[macro_export]
macro_rules! ktest {
    ($(fn $name:ident() -> TestResult $body:block)*) => {$(
        #[cfg(all(feature = "ktest", target_os = "none"))]
        fn $name() -> $crate::ktest::TestResult $body

        #[cfg(all(feature = "ktest", target_os = "none"))]
        const _: () = {
            #[used]
            #[unsafe(link_section = "ktests")]
            static TEST: $crate::ktest::KTest = $crate::ktest::KTest {
                name: concat!(module_path!(), "::", stringify!($name)),
                run: $name,
            };
        };
    )*};
}

/// Fails the current test unless the condition holds.
#[macro_export]
macro_rules! check {
    ($cond:expr) => {
        $crate::check!($cond, "check failed: {}", stringify!($cond))
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::ktest::TestFailure {
                message: alloc::format!($($arg)+),
                file: file!(),
                line: line!(),
            });
        }
    };
}

/// Fails the current test unless both sides are equal, printing both.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr) => {
        match (&$left, &$right) {
            (l, r) => $crate::check!(
                l == r,
                "{} == {}: left {:?}, right {:?}",
                stringify!($left),
                stringify!($right),
                l,
                r
            ),
        }
    };
}

#[cfg(all(feature = "ktest", target_os = "none"))]
mod runner {
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicPtr, Ordering};

    use super::KTest;
    use crate::arch::{self, QemuExit};
    use crate::kprintln;

    unsafe extern "C" {
        // Declared as bytes: only their addresses are used.
        static __start_ktests: u8;
        static __stop_ktests: u8;
    }

    fn registry() -> &'static [KTest] {
        // SAFETY: the linker places every `KTest` record of the `ktests` section between these two symbols, and nothing else goes into that section.
        unsafe {
            let start = core::ptr::addr_of!(__start_ktests).cast::<KTest>();
            let stop = core::ptr::addr_of!(__stop_ktests).cast::<KTest>();
            let len = (stop as usize - start as usize) / core::mem::size_of::<KTest>();
            core::slice::from_raw_parts(start, len)
        }
    }

    static CURRENT: AtomicPtr<KTest> = AtomicPtr::new(core::ptr::null_mut());

    /// The test running now, for the panic handler.
    pub fn current() -> Option<&'static str> {
        let t = CURRENT.load(Ordering::Relaxed);
        // SAFETY: CURRENT only ever holds null or a pointer into the static registry.
        (!t.is_null()).then(|| unsafe { (*t).name })
    }

    pub fn run_all(filter: Option<&str>) -> ! {
        let mut tests: Vec<&'static KTest> =
            registry().iter().filter(|t| filter.is_none_or(|f| t.name.contains(f))).collect();
        tests.sort_by_key(|t| t.name);
        kprintln!("running {} kernel tests", tests.len());
        let (mut passed, mut failed) = (0, 0);
        for test in tests {
            CURRENT.store(test as *const KTest as *mut KTest, Ordering::Relaxed);
            match (test.run)() {
                Ok(()) => {
                    passed += 1;
                    kprintln!("test {} ... ok", test.name);
                }
                Err(failure) => {
                    failed += 1;
                    kprintln!("test {} ... FAILED\n    {failure}", test.name);
                }
            }
        }
        CURRENT.store(core::ptr::null_mut(), Ordering::Relaxed);
        kprintln!("ktest: {passed} passed, {failed} failed");
        arch::exit_qemu(if failed == 0 { QemuExit::Success } else { QemuExit::Failure })
    }
}

#[cfg(all(feature = "ktest", target_os = "none"))]
pub use runner::{current, run_all};

/// The test running now (never any outside the test build).
#[cfg(not(all(feature = "ktest", target_os = "none")))]
pub fn current() -> Option<&'static str> {
    None
}
