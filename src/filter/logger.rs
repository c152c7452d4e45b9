//! The `log` crate's lines go to Envoy's log (`proxy_log`), filtered by Envoy's own level so a
//! line below it is neither formatted nor sent across the boundary; a panic (which then traps
//! the VM, README "Failure policy") is logged first, at `critical`.

// Natively (tests, benches) nothing starts the module, so nothing installs the logger.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use super::host::{self, LogLevel};

struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let _ = host::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Once, when the module starts: the logger at `Info` and the panic hook.
pub(super) fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        std::panic::set_hook(Box::new(|panic| {
            let _ = host::log(LogLevel::Critical, &panic.to_string());
        }));
    }
    set_level(LogLevel::Info);
}

pub(super) fn set_level(level: LogLevel) {
    log::set_max_level(match level {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Critical => log::LevelFilter::Off,
    });
}
