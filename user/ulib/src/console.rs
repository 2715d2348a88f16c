//! Console output (`print!`, `println!`, `eprint!`, `eprintln!`) and line input.
//!
//! Output is unbuffered: each macro call formats into a small stack buffer and writes it in as
//! few `write` calls as fit, so lines of different threads rarely interleave mid-line.

use crate::line::{LineEditor, Status};
use alloc::vec::Vec;
use crate::sys;
use alloc::string::String;
use core::fmt;

/// Standard output (fd 1).
pub struct Stdout;
/// Standard error (fd 2).
pub struct Stderr;

/// Formats into a fixed buffer and writes it out whenever it fills.
struct Buffered<const N: usize> {
    fd: u64,
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Buffered<N> {
    fn flush(&mut self) {
        // Console output has nowhere to report failure to; dropping it is the only choice.
        let _ = sys::write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl<const N: usize> fmt::Write for Buffered<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == N {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

fn write_fmt_to(fd: u64, args: fmt::Arguments) {
    let mut out = Buffered::<256> { fd, buf: [0; 256], len: 0 };
    let _ = fmt::Write::write_fmt(&mut out, args);
    out.flush();
}

impl fmt::Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        sys::write_all(1, s.as_bytes()).map_err(|_| fmt::Error)
    }
    fn write_fmt(&mut self, args: fmt::Arguments) -> fmt::Result {
        write_fmt_to(1, args);
        Ok(())
    }
}

impl fmt::Write for Stderr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        sys::write_all(2, s.as_bytes()).map_err(|_| fmt::Error)
    }
    fn write_fmt(&mut self, args: fmt::Arguments) -> fmt::Result {
        write_fmt_to(2, args);
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    write_fmt_to(1, args);
}

#[doc(hidden)]
pub fn _eprint(args: fmt::Arguments) {
    write_fmt_to(2, args);
}

/// Output is unbuffered between calls; kept so that exit paths say what they rely on.
pub fn flush() {}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints to the console's error stream.
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::console::_eprint(format_args!($($arg)*)) };
}

/// Prints a line to the console's error stream.
#[macro_export]
macro_rules! eprintln {
    () => { $crate::console::_eprint(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::_eprint(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Reads one line from the console with editing (backspace, Ctrl-U), echoing what is typed.
/// `Ok(None)` at end of input (Ctrl-D on an empty line, or a read of 0 bytes).
pub fn read_line() -> Result<Option<String>, sysabi::Error> {
    let mut editor = LineEditor::new();
    let mut byte = [0u8; 1];
    let mut echo = Vec::new();
    loop {
        if sys::read(0, &mut byte)? == 0 {
            return Ok(None);
        }
        echo.clear();
        let status = editor.feed(byte[0], &mut echo);
        if !echo.is_empty() {
            let _ = sys::write_all(1, &echo);
        }
        match status {
            Status::More => {}
            Status::Done => return Ok(Some(editor.take())),
            Status::EndOfInput => return Ok(None),
        }
    }
}
