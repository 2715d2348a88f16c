//! The interactive console on the serial port (`./run.sh shell`): a line editor and a few
//! commands for looking at the kernel. User programs will take it over once there are processes.
use alloc::string::String;

use crate::{arch, kprint, kprintln, memory, time};

pub fn print_status() {
    let f = memory::frame_stats();
    let h = memory::heap_stats();
    kprintln!("uptime   {} ms ({} ticks)", time::uptime_ms(), time::ticks());
    kprintln!("frames   {} used of {} ({} MiB free)", f.allocated, f.total, f.free() * 4 / 1024);
    kprintln!("heap     {} KiB mapped, {} KiB in use", h.mapped / 1024, h.allocated / 1024);
    kprintln!("fix-ups  {} faults recovered", arch::fixup::fixup_count());
}

fn help() {
    kprintln!("commands:");
    kprintln!("  help      this list");
    kprintln!("  status    uptime, memory and fault counters");
    kprintln!("  poweroff  stop the machine (also: exit)");
}

fn read_line(buf: &mut String) {
    buf.clear();
    loop {
        let Some(b) = arch::serial::try_read_byte() else {
            arch::wait_for_interrupt();
            continue;
        };
        match b {
            b'\r' | b'\n' => {
                kprintln!();
                return;
            }
            0x08 | 0x7f => {
                if buf.pop().is_some() {
                    kprint!("\x08 \x08");
                }
            }
            0x20..=0x7e => {
                buf.push(b as char);
                kprint!("{}", b as char);
            }
            _ => {}
        }
    }
}

pub fn shell() -> ! {
    kprintln!("graft kernel console; type `help`");
    let mut line = String::new();
    loop {
        kprint!("kern> ");
        read_line(&mut line);
        match line.trim() {
            "" => {}
            "help" => help(),
            "status" => print_status(),
            "poweroff" | "exit" => arch::exit_qemu(arch::QemuExit::Success),
            other => kprintln!("unknown command `{other}`; type `help`"),
        }
    }
}
