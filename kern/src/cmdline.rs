//! The kernel command line: `key=value` words separated by spaces, passed by the runner through
//! QEMU's fw_cfg. Unknown keys are errors, so a typo is reported rather than silently ignored.
use alloc::string::{String, ToString};
use core::fmt;

use log::LevelFilter;

/// What the kernel does once booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Run the demonstration and power off.
    #[default]
    Demo,
    /// An interactive console on the serial port.
    Shell,
    /// The end-to-end tests of user space.
    Test,
    /// A write workload that runs until the machine is killed (the crash-safety test).
    Crash,
}

impl Mode {
    /// The argument `init` gets for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Demo => "demo",
            Mode::Shell => "shell",
            Mode::Test => "test",
            Mode::Crash => "crash",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmdline {
    pub mode: Mode,
    pub log_level: LevelFilter,
    /// Only run in-kernel tests whose name contains this.
    pub test_filter: Option<String>,
    /// Blocks the buffer cache holds (`cache=N`).
    pub cache_blocks: usize,
    /// Fault injection (`failalloc=N`): the Nth heap allocation made on a system-call path
    /// fails (0: none yet), and the test-only `fail_alloc` system call may re-arm it. `None`:
    /// off (the call is refused, unless `mode=test`).
    pub fail_alloc: Option<u64>,
}

/// The buffer cache's size when the command line does not say, and the range it may say.
pub const DEFAULT_CACHE_BLOCKS: usize = 1024;
pub const CACHE_BLOCKS_RANGE: core::ops::RangeInclusive<usize> = 16..=65536;

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline { mode: Mode::Demo, log_level: LevelFilter::Info, test_filter: None, cache_blocks: DEFAULT_CACHE_BLOCKS, fail_alloc: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    UnknownKey(String),
    MissingValue(String),
    BadValue { key: String, value: String, expected: &'static str },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CmdlineError::UnknownKey(k) => write!(f, "unknown command-line key `{k}` (known: mode, log, test, cache, failalloc)"),
            CmdlineError::MissingValue(k) => write!(f, "command-line key `{k}` needs a value (`{k}=...`)"),
            CmdlineError::BadValue { key, value, expected } => {
                write!(f, "`{key}={value}`: expected {expected}")
            }
        }
    }
}

pub fn parse(line: &str) -> Result<Cmdline, CmdlineError> {
    let mut c = Cmdline::default();
    for word in line.split_whitespace() {
        let (key, value) = word.split_once('=').ok_or_else(|| CmdlineError::MissingValue(word.to_string()))?;
        let bad = |expected| CmdlineError::BadValue { key: key.to_string(), value: value.to_string(), expected };
        match key {
            "mode" => {
                c.mode = match value {
                    "demo" => Mode::Demo,
                    "shell" => Mode::Shell,
                    "test" => Mode::Test,
                    "crash" => Mode::Crash,
                    _ => return Err(bad("demo, shell, test or crash")),
                }
            }
            "log" => {
                c.log_level = match value {
                    "off" => LevelFilter::Off,
                    "error" => LevelFilter::Error,
                    "warn" => LevelFilter::Warn,
                    "info" => LevelFilter::Info,
                    "debug" => LevelFilter::Debug,
                    "trace" => LevelFilter::Trace,
                    _ => return Err(bad("off, error, warn, info, debug or trace")),
                }
            }
            "test" => c.test_filter = Some(value.to_string()),
            "cache" => {
                c.cache_blocks = value
                    .parse()
                    .ok()
                    .filter(|n| CACHE_BLOCKS_RANGE.contains(n))
                    .ok_or_else(|| bad("a number of blocks from 16 to 65536"))?
            }
            "failalloc" => c.fail_alloc = Some(value.parse().map_err(|_| bad("an allocation number (0: none)"))?),
            _ => return Err(CmdlineError::UnknownKey(key.to_string())),
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(parse("  "), Ok(Cmdline::default()));
    }

    #[test]
    fn parses_every_key() {
        let c = parse("mode=shell log=debug test=memory").unwrap();
        assert_eq!(c.mode, Mode::Shell);
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(c.test_filter.as_deref(), Some("memory"));
    }

    #[test]
    fn typos_are_reported() {
        assert_eq!(parse("mdoe=shell"), Err(CmdlineError::UnknownKey("mdoe".into())));
        assert_eq!(parse("shell"), Err(CmdlineError::MissingValue("shell".into())));
        assert!(matches!(parse("log=loud"), Err(CmdlineError::BadValue { .. })));
        assert!(parse("mode=gui").unwrap_err().to_string().contains("demo, shell, test or crash"));
        assert_eq!(parse("cache=64").unwrap().cache_blocks, 64);
        assert_eq!(parse("failalloc=17").unwrap().fail_alloc, Some(17));
        assert_eq!(parse("").unwrap().fail_alloc, None);
        assert!(parse("failalloc=x").is_err() && parse("failalloc=-1").is_err());
        assert!(parse("cache=8").is_err() && parse("cache=lots").is_err() && parse("cache=99999999999999999999").is_err());
    }
}
