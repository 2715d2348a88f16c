//! What the test programs (`usertest`, `fstest`) share: a test's result and the macros that
//! fail it with a message naming the expression.
use alloc::string::String;

/// A test's outcome: `Err` carries why it failed.
pub type TestResult = Result<(), String>;

/// Fails the test unless `$e` is `Err($want)`.
#[macro_export]
macro_rules! expect_err {
    ($e:expr, $want:expr) => {
        match $e {
            Err(got) if got == $want => {}
            Err(got) => return Err($crate::testing::__format!("{}: expected {}, got {}", stringify!($e), $want, got)),
            Ok(v) => return Err($crate::testing::__format!("{}: expected {}, got Ok({:?})", stringify!($e), $want, v)),
        }
    };
}

/// Unwraps an Ok or fails the test with the error's name.
#[macro_export]
macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err($crate::testing::__format!("{}: {}", stringify!($e), e)),
        }
    };
}

/// Fails the test with the message unless the condition holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err($crate::testing::__format!($($msg)*));
        }
    };
}

#[doc(hidden)]
pub use alloc::format as __format;
