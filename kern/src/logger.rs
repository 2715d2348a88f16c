//! The `log` facade's sink: levelled lines on the serial console, stamped with uptime.
use log::{LevelFilter, Log, Metadata, Record};

use crate::kprintln;

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ms = crate::time::uptime_ms();
        let target = record.target().strip_prefix("kern::").unwrap_or(record.target());
        kprintln!("[{:4}.{:03}] {:<5} {}: {}", ms / 1000, ms % 1000, record.level(), target, record.args());
    }

    fn flush(&self) {}
}

pub fn init(level: LevelFilter) {
    // A second call (there is none) would leave the first logger in place.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
