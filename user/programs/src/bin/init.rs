//! `init`: the first process. The kernel starts it with a mode:
//!
//! - `init shell` (or no mode): runs the interactive shell;
//! - `init demo`: runs the demos (file-system grafts, scheduling, hostile grafts, page
//!   eviction); exits 0 only if all passed;
//! - `init crash`: runs `crashtest`, which writes until the machine is killed;
//! - `init test`: runs the tests (`usertest`, `fstest`, ...), then the demos; exits 0 only if
//!   everything passed.
//!
//! Its exit code is the verdict of the whole run: 0 passed, 1 a check failed, 2 a usage
//! error, 3 a program could not be started.
#![no_std]
#![no_main]

use ulib::process;
use ulib::{eprintln, println};

const FAILED: i32 = 1;
const USAGE: i32 = 2;
const NOT_STARTED: i32 = 3;

/// Runs `name args...` to its end and reports; Ok(code) or Err(exit code for init).
fn run(name: &str, args: &[&str]) -> Result<i32, i32> {
    println!("init: running {name}");
    match process::run(name, args) {
        Ok(code) => {
            println!("init: {name} exited with {code}");
            Ok(code)
        }
        Err(e) => {
            eprintln!("init: cannot run {name}: {e}");
            Err(NOT_STARTED)
        }
    }
}

/// Runs each program; all must exit 0.
fn run_all(programs: &[&str]) -> i32 {
    let mut failed = 0;
    let mut not_started = false;
    for name in programs {
        match run(name, &[]) {
            Ok(0) => {}
            Ok(_) => failed += 1,
            Err(_) => not_started = true,
        }
    }
    let passed = failed == 0 && !not_started;
    println!(
        "init: {} ({} of {} programs passed)",
        if passed { "all checks passed" } else { "FAILED" },
        programs.len() - failed - usize::from(not_started),
        programs.len()
    );
    if not_started {
        NOT_STARTED
    } else if failed > 0 {
        FAILED
    } else {
        0
    }
}

fn main(args: &[&str]) -> i32 {
    let mode = args.get(1).copied().unwrap_or("shell");
    println!("init: pid {}, mode {mode}", ulib::sys::getpid());
    match mode {
        "shell" => match run("shell", &args[2.min(args.len())..]) {
            Ok(code) => code,
            Err(code) => code,
        },
        "demo" => run_all(&["fsgrafts", "schedtest", "hostile", "dbsim"]),
        // Runs until the machine is killed (the crash-safety test).
        "crash" => run_all(&["crashtest"]),
        "test" => run_all(&["usertest", "fstest", "fsgrafts", "schedtest", "hostile", "dbsim", "robust"]),
        other => {
            eprintln!("init: unknown mode {other:?} (expected shell, demo or test)");
            USAGE
        }
    }
}
ulib::entry!(main);
