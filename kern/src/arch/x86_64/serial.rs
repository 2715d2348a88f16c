//! COM1, the kernel's console: 16550 UART at I/O port 0x3F8.
use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3F8;

// SAFETY: 0x3F8 is COM1 on every PC-compatible machine and QEMU; nothing else in the kernel drives these ports, all access goes through this mutex.
static PORT: Mutex<SerialPort> = Mutex::new(unsafe { SerialPort::new(COM1) });

pub fn init() {
    PORT.lock().init();
}

/// Writes formatted text to the console. Interrupts are held off while the port is locked so that
/// an interrupt handler that logs cannot deadlock against the code it interrupted.
pub fn write_fmt(args: fmt::Arguments) {
    super::without_interrupts(|| {
        let mut port = PORT.lock();
        let _ = Translate(&mut port).write_fmt(args);
    });
}

/// Writes from a context that may have interrupted a holder of the port lock (a panic, a fault
/// dump): steals the port instead of waiting for a lock that will never be released.
pub fn write_fmt_emergency(args: fmt::Arguments) {
    // SAFETY: used only on the way to stopping the machine; a torn line of output is the worst outcome of racing with the interrupted writer.
    let mut port = unsafe { SerialPort::new(COM1) };
    let _ = Translate(&mut port).write_fmt(args);
}

/// Non-blocking read of one received byte.
pub fn try_read_byte() -> Option<u8> {
    super::without_interrupts(|| PORT.lock().try_receive().ok())
}

/// Turns `\n` into `\r\n` so the console looks right on a raw terminal.
struct Translate<'a>(&'a mut SerialPort);

impl Write for Translate<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.send_raw(b'\r');
            }
            self.0.send_raw(b);
        }
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::arch::serial::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::kprint!("{}\n", format_args!($($arg)*)) };
}
