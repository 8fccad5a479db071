//! A small stderr logger: one line per record, UTC timestamp, level, target for access lines.
//!
//! Written here rather than pulled in (env_logger brings regex and terminal handling) because postern needs only
//! this, and every byte of binary and RSS counts on a NAS.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger. Safe to call once; later calls only change the level.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let now = crate::clock::utc_timestamp(crate::clock::now_millis());
        // One write per line so lines from the one thread never interleave with stray output.
        let line = if record.target() == "access" {
            format!("{now} {level} access {}\n", record.args())
        } else {
            format!("{now} {level} {}\n", record.args())
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
