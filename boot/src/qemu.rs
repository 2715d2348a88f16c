//! Runs a disk image in QEMU: serial console to stdout, a time-out, QEMU killed when we stop, and
//! the guest's verdict read from the `isa-debug-exit` device's exit status.
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::testlog::TestLog;

/// QEMU's exit status when the guest writes 0x10 to the debug-exit port: `(0x10 << 1) | 1`.
const GUEST_SUCCESS: i32 = 33;

#[derive(Args)]
pub struct RunArgs {
    /// The disk image to boot.
    image: PathBuf,
    /// Kill QEMU and fail after this many seconds (0: never).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Kernel command line, passed through fw_cfg (e.g. "mode=shell log=debug").
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Count guest instructions as time (`-icount shift=0`): deterministic `rdtsc`.
    #[arg(long)]
    icount: bool,
    /// Attach the terminal to the serial console (no time-out; Ctrl-A X quits QEMU).
    #[arg(long)]
    interactive: bool,
    /// Read the in-kernel test harness's output and end with a `N passed, N failed` line.
    #[arg(long)]
    tests: bool,
    /// Like --tests, for user-space test programs: pass if the guest reports success, at least
    /// one `test ... ok` line appeared and none failed.
    #[arg(long)]
    e2e: bool,
    /// Guest memory.
    #[arg(long, default_value = "256M")]
    memory: String,
    /// Use KVM instead of software emulation (TCG).
    #[arg(long)]
    kvm: bool,
    /// Start QEMU's gdb stub on localhost:1234 and wait for the debugger before running the
    /// guest (no time-out).
    #[arg(long)]
    gdb: bool,
    /// A raw disk image to attach as a virtio-blk disk (repeatable: vda, vdb, ... in order).
    #[arg(long = "disk")]
    disks: Vec<PathBuf>,
    /// Throttle every attached disk (the file system and swap) to this many requests per second
    /// each (QEMU's drive throttling), so that the disks' rate is stated, not an artifact of the
    /// host's page cache.
    #[arg(long)]
    disk_iops: Option<u32>,
}

/// Kills QEMU if the runner stops first (time-out, panic, Ctrl-C).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command(args: &RunArgs) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.arg("-drive").arg(format!("format=raw,file={}", args.image.display()));
    cmd.args(["-display", "none", "-no-reboot", "-m", &args.memory]);
    cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    // fw_cfg strings may not contain commas unescaped: QEMU uses ",," for a literal comma.
    let cmdline = args.cmdline.replace(',', ",,");
    cmd.arg("-fw_cfg").arg(format!("name=opt/graft/cmdline,string={cmdline} "));
    if args.icount {
        cmd.args(["-icount", "shift=0"]);
    }
    if args.kvm {
        cmd.args(["-enable-kvm", "-cpu", "qemu64"]);
    }
    if args.gdb {
        cmd.args(["-s", "-S"]);
    }
    for (i, disk) in args.disks.iter().enumerate() {
        let mut drive = format!("file={},format=raw,if=none,id=disk{i}", disk.display());
        if let Some(iops) = args.disk_iops {
            drive.push_str(&format!(",throttling.iops-total={iops}"));
        }
        cmd.arg("-drive").arg(drive);
        cmd.arg("-device").arg(format!("virtio-blk-pci,drive=disk{i}"));
    }
    cmd.args(["-serial", if args.interactive { "mon:stdio" } else { "stdio" }]);
    cmd
}

pub fn run(args: &RunArgs) -> ExitCode {
    if !args.image.is_file() {
        eprintln!("boot: disk image {} not found", args.image.display());
        return ExitCode::from(1);
    }
    if let Some(missing) = args.disks.iter().find(|d| !d.is_file()) {
        eprintln!("boot: disk {} not found", missing.display());
        return ExitCode::from(1);
    }
    if let Some(iops) = args.disk_iops {
        eprintln!("boot: every disk throttled to {iops} requests/s");
    }
    let mut cmd = command(args);
    if args.interactive || args.gdb {
        return match cmd.status() {
            Ok(s) if s.code() == Some(GUEST_SUCCESS) => ExitCode::SUCCESS,
            Ok(s) => {
                eprintln!("boot: QEMU exited with {s}");
                ExitCode::from(1)
            }
            Err(e) => spawn_error(e),
        };
    }

    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => KillOnDrop(c),
        Err(e) => return spawn_error(e),
    };
    let Some(stdout) = child.0.stdout.take() else {
        eprintln!("boot: QEMU's stdout was not captured");
        return ExitCode::from(1);
    };
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while let Ok(n) = reader.read_until(b'\n', &mut buf) {
            if n == 0 || tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                break;
            }
            buf.clear();
        }
    });

    let deadline = (args.timeout > 0).then(|| started + Duration::from_secs(args.timeout));
    let mut log = TestLog::default();
    let mut first_line: Option<Duration> = None;
    let mut stdout = std::io::stdout();
    let mut timed_out = false;
    loop {
        let wait = deadline.map_or(Duration::from_millis(200), |d| d.saturating_duration_since(Instant::now()).min(Duration::from_millis(200)));
        match rx.recv_timeout(wait) {
            Ok(line) => {
                first_line.get_or_insert_with(|| started.elapsed());
                let line = line.replace('\r', "");
                let _ = stdout.write_all(line.as_bytes());
                let _ = stdout.flush();
                log.feed(&line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            timed_out = true;
            break;
        }
    }
    let status = if timed_out {
        let _ = child.0.kill();
        None
    } else {
        child.0.wait().ok()
    };
    if let Some(t) = first_line {
        eprintln!("boot: first console line after {:.2}s, run took {:.2}s", t.as_secs_f64(), started.elapsed().as_secs_f64());
    }
    let guest_ok = status.and_then(|s| s.code()) == Some(GUEST_SUCCESS);
    if timed_out {
        eprintln!("boot: timed out after {}s; QEMU killed", args.timeout);
    } else if !guest_ok {
        match status {
            Some(s) => eprintln!("boot: guest reported failure (QEMU {s})"),
            None => eprintln!("boot: could not get QEMU's exit status"),
        }
    }
    if args.tests {
        println!("{}", log.summary_line());
        return if guest_ok && log.passed() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    if args.e2e {
        // Failing the guest without a FAILED line (a crash, a hang) still counts as a failure.
        let failed = log.failed.len() + usize::from(!guest_ok && log.failed.is_empty());
        println!("kernel: {} passed, {} failed", log.passed.len(), failed);
        return if guest_ok && log.passed_e2e() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    if guest_ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn spawn_error(e: std::io::Error) -> ExitCode {
    eprintln!("boot: cannot start qemu-system-x86_64: {e} (install it with `apt-get install qemu-system-x86`, or run ./run.sh which does)");
    ExitCode::from(1)
}
