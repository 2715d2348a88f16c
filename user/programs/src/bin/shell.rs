//! `shell`: an interactive command line over the console. Type `help` for the commands.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use sysabi::Error;
use ulib::args::{parse_u64, parse_i32};
use ulib::graft::{self, LoadError, StatsLine};
use ulib::line::split_words;
use ulib::file::{self, File, FileKind};
use ulib::{console, fs, print, println, process, sys};

const HELP: &str = "\
commands:
  help                      this text
files on the disk (paths start at /; errors are printed by name, e.g. NotFound):
  ls [DIR|FILE]             list a directory (default /): kind, size, name; without a
                            file system (NoFileSystem) `ls` lists the ramdisk instead
  cat FILE...               print files
  write FILE TEXT...        create or empty FILE and write TEXT (words joined by spaces)
                            and a newline; quote to keep spaces: write f \"a  b\"
  append FILE TEXT...       the same, at the end of FILE (created if missing)
  rm FILE...                remove files
  mkdir DIR...              make directories
  rmdir DIR...              remove empty directories
  mv FROM TO                rename or move a file or directory (a file at TO is replaced)
  stat PATH...              inode, kind, size, disk use, mode, links, mtime
  sync                      write every dirty block to the disk
  df                        file system size, use, inodes and buffer-cache counters
programs and grafts (from the ramdisk the kernel booted with):
  ramdisk                   list the ramdisk's files
  run PROG [ARGS...]        run a program and wait for it (also: PROG [ARGS...])
  bg PROG [ARGS...]         start a program and return at once (prints its pid)
  wait PID                  wait for a program started with `bg`
  sleep MS                  pause the shell
  points                    list the graft points
  load FILE POINT [PID]     load a graft blob from the ramdisk and attach it to POINT
                            for process PID (default: this shell)
  grafts                    list this shell's grafts with their statistics
  grafts -v ID              one graft in full: point, code size, limits, statistics, its IR
  detach ID                 detach graft ID
  exit [CODE]               leave the shell";

/// What a command asks of the loop.
enum Flow {
    Continue,
    Exit(i32),
}

fn cmd_ramdisk() -> Result<(), Error> {
    for name in fs::list()? {
        println!("{name}");
    }
    Ok(())
}

/// Prints `cmd: path: error` for a failed file command; the shell goes on.
fn report(cmd: &str, path: &str, r: Result<(), Error>) {
    if let Err(e) = r {
        println!("{cmd}: {path}: {e}");
    }
}

/// One line of `ls`: kind, size, name (directories end in `/`).
fn print_entry(kind: FileKind, size: Option<u64>, name: &str) {
    let slash = if kind == FileKind::Directory { "/" } else { "" };
    match size {
        Some(size) => println!("{kind:<7} {size:>10}  {name}{slash}"),
        None => println!("{kind:<7} {:>10}  {name}{slash}", "?"),
    }
}

fn cmd_ls(words: &[String]) -> Result<(), Error> {
    let dir = words.first().map(String::as_str).unwrap_or("/");
    if words.len() > 1 {
        println!("usage: ls [DIR|FILE]");
        return Ok(());
    }
    let mut entries = match file::read_dir(dir) {
        Ok(entries) => entries,
        Err(Error::NoFileSystem | Error::NoSys) if words.is_empty() => {
            println!("(no file system on a disk: the ramdisk's files)");
            return cmd_ramdisk();
        }
        Err(Error::NotADirectory) => {
            // `ls FILE` shows that file's line.
            let r = file::stat(dir).map(|m| print_entry(m.kind, Some(m.size), dir));
            report("ls", dir, r);
            return Ok(());
        }
        Err(e) => {
            report("ls", dir, Err(e));
            return Ok(());
        }
    };
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in &entries {
        let size = file::stat(&file::join(dir, &e.name)).ok().map(|m| m.size);
        print_entry(e.kind, size, &e.name);
    }
    Ok(())
}

fn cmd_cat(words: &[String]) -> Result<(), Error> {
    if words.is_empty() {
        println!("usage: cat FILE...");
    }
    for path in words {
        report("cat", path, cat_one(path));
    }
    Ok(())
}

fn cat_one(path: &str) -> Result<(), Error> {
    let mut f = File::open(path, file::flags::READ)?;
    if f.stat()?.is_dir() {
        return Err(Error::IsADirectory);
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sys::write_all(1, &buf[..n])?;
    }
}

/// `write FILE TEXT...` (`append` false) and `append FILE TEXT...` (`append` true).
fn cmd_write(words: &[String], append: bool) -> Result<(), Error> {
    let name = if append { "append" } else { "write" };
    let Some((path, text)) = words.split_first() else {
        println!("usage: {name} FILE TEXT...");
        return Ok(());
    };
    let mut line = text.join(" ");
    line.push('\n');
    let mode = if append { file::flags::APPEND } else { file::flags::TRUNCATE };
    let r = File::open(path, file::flags::WRITE | file::flags::CREATE | mode).and_then(|mut f| {
        f.write_all(line.as_bytes())?;
        f.close()
    });
    report(name, path, r);
    Ok(())
}

/// Runs `op` on each path argument (`rm`, `mkdir`, `rmdir`).
fn each_path(cmd: &str, words: &[String], op: fn(&str) -> Result<(), Error>) -> Result<(), Error> {
    if words.is_empty() {
        println!("usage: {cmd} PATH...");
    }
    for path in words {
        report(cmd, path, op(path));
    }
    Ok(())
}

fn cmd_mv(words: &[String]) -> Result<(), Error> {
    let [from, to] = words else {
        println!("usage: mv FROM TO");
        return Ok(());
    };
    if let Err(e) = file::rename(from, to) {
        println!("mv: {from} -> {to}: {e}");
    }
    Ok(())
}

fn cmd_stat(words: &[String]) -> Result<(), Error> {
    if words.is_empty() {
        println!("usage: stat PATH...");
    }
    for path in words {
        match file::stat(path) {
            Ok(m) => println!(
                "{path}: {} inode {} size {} disk {} mode {:04o} links {} mtime {}",
                m.kind, m.ino, m.size, m.disk_bytes, m.mode, m.links, m.mtime
            ),
            Err(e) => println!("stat: {path}: {e}"),
        }
    }
    Ok(())
}

fn cmd_df() -> Result<(), Error> {
    let i = file::fs_info()?;
    let kib = |blocks: u64| blocks.saturating_mul(i.block_size) / 1024;
    let used = i.blocks.saturating_sub(i.free_blocks);
    let pct = used.saturating_mul(100).checked_div(i.blocks).unwrap_or(0);
    println!("block size {} bytes", i.block_size);
    println!("size   {:>10} KiB  {:>8} blocks", kib(i.blocks), i.blocks);
    println!("used   {:>10} KiB  {:>8} blocks  {pct}%", kib(used), used);
    println!("free   {:>10} KiB  {:>8} blocks", kib(i.free_blocks), i.free_blocks);
    println!(
        "inodes {:>10} total {:>8} used {:>8} free",
        i.inodes,
        i.inodes.saturating_sub(i.free_inodes),
        i.free_inodes
    );
    println!(
        "cache  {} blocks: {} hits, {} misses, {} blocking reads, {} async reads, {} prefetch hits",
        i.cache_blocks, i.cache_hits, i.cache_misses, i.cache_blocking_reads, i.cache_async_reads,
        i.cache_prefetch_hits
    );
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

fn cmd_grafts(words: &[String]) -> Result<(), Error> {
    // `grafts -v ID`: one graft in full, with its IR.
    if let [flag, id] = words {
        if flag == "-v" {
            let Some(id) = parse_u64(id).and_then(|v| u32::try_from(v).ok()) else {
                println!("usage: grafts [-v ID]");
                return Ok(());
            };
            print!("{}", graft::info(id)?);
            return Ok(());
        }
    }
    if !words.is_empty() {
        println!("usage: grafts [-v ID]");
        return Ok(());
    }
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
        "ls" => cmd_ls(rest),
        "ramdisk" => cmd_ramdisk(),
        "cat" => cmd_cat(rest),
        "write" => cmd_write(rest, false),
        "append" => cmd_write(rest, true),
        "rm" => each_path("rm", rest, file::unlink),
        "mkdir" => each_path("mkdir", rest, file::mkdir),
        "rmdir" => each_path("rmdir", rest, file::rmdir),
        "mv" => cmd_mv(rest),
        "stat" => cmd_stat(rest),
        "sync" => file::sync(),
        "df" => cmd_df(),
        "run" => cmd_run(rest),
        "bg" => cmd_bg(rest),
        "wait" => cmd_wait(rest),
        "sleep" => cmd_sleep(rest),
        "points" => cmd_points(),
        "load" => cmd_load(rest),
        "grafts" => cmd_grafts(rest),
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
