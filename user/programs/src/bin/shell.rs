//! `shell`: an interactive command line over the console. Type `help` for the commands.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use sysabi::Error;
use ulib::args::{parse_u64, parse_i32};
use ulib::graft::{self, LoadError, StatsLine};
use ulib::line::split_words;
use ulib::{console, fs, print, println, process, sys};

const HELP: &str = "\
commands:
  help                      this text
  ls                        list the ramdisk's files
  run PROG [ARGS...]        run a program and wait for it (also: PROG [ARGS...])
  bg PROG [ARGS...]         start a program and return at once (prints its pid)
  wait PID                  wait for a program started with `bg`
  sleep MS                  pause the shell
  points                    list the graft points
  load FILE POINT [PID]     load a graft blob from the ramdisk and attach it to POINT
                            for process PID (default: this shell)
  grafts                    list this shell's grafts with their statistics
  detach ID                 detach graft ID
  exit [CODE]               leave the shell";

/// What a command asks of the loop.
enum Flow {
    Continue,
    Exit(i32),
}

fn cmd_ls() -> Result<(), Error> {
    for name in fs::list()? {
        println!("{name}");
    }
    Ok(())
}

fn cmd_run(words: &[String]) -> Result<(), Error> {
    let Some((prog, rest)) = words.split_first() else {
        println!("usage: run PROG [ARGS...]");
        return Ok(());
    };
    let args: Vec<&str> = rest.iter().map(String::as_str).collect();
    let pid = process::spawn_program(prog, &args)?;
    let code = sys::wait(pid)?;
    println!("[{prog}: pid {pid} exited with {code}]");
    Ok(())
}

fn cmd_bg(words: &[String]) -> Result<(), Error> {
    let Some((prog, rest)) = words.split_first() else {
        println!("usage: bg PROG [ARGS...]");
        return Ok(());
    };
    let args: Vec<&str> = rest.iter().map(String::as_str).collect();
    let pid = process::spawn_program(prog, &args)?;
    println!("[{prog}: pid {pid} started]");
    Ok(())
}

fn cmd_wait(words: &[String]) -> Result<(), Error> {
    let Some(pid) = words.first().and_then(|s| parse_u64(s)) else {
        println!("usage: wait PID");
        return Ok(());
    };
    let code = sys::wait(pid)?;
    println!("[pid {pid} exited with {code}]");
    Ok(())
}

fn cmd_sleep(words: &[String]) -> Result<(), Error> {
    let Some(ms) = words.first().and_then(|s| parse_u64(s)) else {
        println!("usage: sleep MS");
        return Ok(());
    };
    sys::sleep(ms)
}

fn cmd_points() -> Result<(), Error> {
    for (i, p) in graft::points()?.iter().enumerate() {
        println!("{i:2} {p}");
    }
    Ok(())
}

fn cmd_load(words: &[String]) -> Result<(), Error> {
    let (file, point) = match words {
        [file, point] | [file, point, _] => (file, point),
        _ => {
            println!("usage: load FILE POINT [PID]");
            return Ok(());
        }
    };
    let pid = match words.get(2) {
        None => 0,
        Some(s) => match parse_u64(s) {
            Some(pid) => pid,
            None => {
                println!("load: not a pid: {s}");
                return Ok(());
            }
        },
    };
    let loaded = match graft::load_file(file) {
        Ok(l) => l,
        Err(LoadError::Rejected { log }) => {
            println!("load: {file}: Rejected by the verifier:");
            println!("{log}");
            return Ok(());
        }
        Err(LoadError::Sys(e)) => return Err(e),
    };
    println!("loaded {file} as graft {}", loaded.id);
    match graft::attach(loaded.id, point, pid) {
        Ok(()) => println!("graft {} attached to {point}", loaded.id),
        Err(Error::WrongPoint) => println!(
            "attach: WrongPoint: graft {} was written for {}, not {point} (it stays loaded)",
            loaded.id,
            loaded.point.as_deref().unwrap_or("another point"),
        ),
        Err(e) => println!("attach: {e} (graft {} stays loaded)", loaded.id),
    }
    Ok(())
}

fn cmd_grafts() -> Result<(), Error> {
    let points = graft::points()?;
    let ids = graft::list()?;
    if ids.is_empty() {
        println!("no grafts loaded");
    }
    for id in ids {
        match graft::stats(id) {
            Ok(stats) => println!("{}", StatsLine { stats: &stats, points: &points }),
            Err(e) => println!("graft {id}: stats: {e}"),
        }
    }
    Ok(())
}

fn cmd_detach(words: &[String]) -> Result<(), Error> {
    let Some(id) = words.first().and_then(|s| parse_u64(s)).and_then(|v| u32::try_from(v).ok()) else {
        println!("usage: detach ID");
        return Ok(());
    };
    graft::detach(id)?;
    println!("graft {id} detached");
    Ok(())
}

fn execute(words: &[String]) -> Flow {
    let Some((cmd, rest)) = words.split_first() else { return Flow::Continue };
    let result = match cmd.as_str() {
        "help" | "?" => {
            println!("{HELP}");
            Ok(())
        }
        "ls" => cmd_ls(),
        "run" => cmd_run(rest),
        "bg" => cmd_bg(rest),
        "wait" => cmd_wait(rest),
        "sleep" => cmd_sleep(rest),
        "points" => cmd_points(),
        "load" => cmd_load(rest),
        "grafts" => cmd_grafts(),
        "detach" => cmd_detach(rest),
        "exit" => {
            let code = rest.first().and_then(|s| parse_i32(s)).unwrap_or(0);
            return Flow::Exit(code);
        }
        // Anything else is a program name, as in `run`.
        _ => match cmd_run(words) {
            Err(Error::NotFound) => {
                println!("{cmd}: no such command or program (try `help`)");
                Ok(())
            }
            r => r,
        },
    };
    if let Err(e) = result {
        println!("{cmd}: {e}");
    }
    Flow::Continue
}

fn main(_args: &[&str]) -> i32 {
    println!("graft kernel shell, pid {}; `help` lists the commands", sys::getpid());
    loop {
        print!("> ");
        let line = match console::read_line() {
            Ok(Some(line)) => line,
            Ok(None) => return 0,
            Err(e) => {
                ulib::eprintln!("shell: console read failed: {e}");
                return 1;
            }
        };
        if let Flow::Exit(code) = execute(&split_words(&line)) {
            return code;
        }
    }
}
ulib::entry!(main);
