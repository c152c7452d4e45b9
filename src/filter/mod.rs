//! proxy-wasm glue: reads what the core asks for, calls it, applies its decision.
//! Host calls go through `proxy_wasm::hostcalls` so an error is handled, never unwrapped.

mod headers;
mod http;
mod log_limit;
mod metrics;
mod root;
mod shared;
mod skipped;

use std::time::UNIX_EPOCH;

use log::warn;
use proxy_wasm::hostcalls;

use crate::clock::Now;
use crate::config::Config;
use crate::murmur3::murmur3_x64_128;

pub use root::Root;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Wall-clock time (Unix ms): only for timestamps that leave the process (cookies, JWT `exp`).
pub(crate) fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Both clocks (see [`crate::clock`]).
pub(crate) fn now() -> Now {
    Now { wall_ms: now_ms(), mono_ms: mono_ms() }
}

/// Envoy's monotonic clock in ms, shared by every worker VM of the process: schedules, the
/// lease and ejections use it, so a wall-clock step stalls none of them.
pub(crate) fn mono_ms() -> u64 {
    match monotonic_ns() {
        Some(ns) => ns / 1_000_000,
        None => {
            // Not expected from Envoy (it answers WASI's monotonic clock from its steady clock);
            // wall time keeps the filter working, with the step sensitivity it then has.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| warn!("session-router: no monotonic clock; using wall time"));
            now_ms()
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn monotonic_ns() -> Option<u64> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        #[link_name = "clock_time_get"]
        fn wasi_clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
    }
    const CLOCK_MONOTONIC: u32 = 1;
    let mut ns: u64 = 0;
    // SAFETY: WASI's clock_time_get writes one u64 to the pointer it is given, which points to
    // a live local; the import's signature is WASI preview 1's.
    let errno = unsafe { wasi_clock_time_get(CLOCK_MONOTONIC, 1_000_000, &mut ns) };
    (errno == 0 && ns > 0).then_some(ns)
}

#[cfg(not(target_arch = "wasm32"))]
fn monotonic_ns() -> Option<u64> {
    None
}

/// 128 random bits from the host (WASI `random_get`). Should that ever fail, a hash of the
/// time and a counter still gives a unique, well-spread id; it is logged.
pub(crate) fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut id) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        warn!("session-router: random source failed ({e}); deriving a session id");
        let seed = [now_ms().to_le_bytes(), COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes()].concat();
        let (a, b) = murmur3_x64_128(&seed, 0);
        id[..8].copy_from_slice(&a.to_le_bytes());
        id[8..].copy_from_slice(&b.to_le_bytes());
    }
    id
}

/// The tick period: the shortest of the probe interval and half the poll interval; with only
/// passive health, once a second (the lease holder prunes the health table of departed hosts).
pub(crate) fn tick_ms(cfg: &Config) -> Option<u64> {
    let probe = cfg.health.active.as_ref().map(|a| a.interval_ms);
    let poll = cfg.discovery.as_ref().map(|d| d.interval_ms / 2);
    let prune = cfg.health.passive.as_ref().map(|_| PRUNE_INTERVAL_MS);
    probe.into_iter().chain(poll).chain(prune).min().map(|ms| ms.max(50))
}

const PRUNE_INTERVAL_MS: u64 = 1000;

pub(crate) fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub(crate) fn property_string(path: &[&str]) -> Option<String> {
    let bytes = hostcalls::get_property(path.to_vec()).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// Envoy's log level for wasm, read with the raw host call: `hostcalls::get_log_level` panics
/// (traps the VM) on an unexpected status, this falls back to `Info` instead.
#[cfg(target_arch = "wasm32")]
fn host_log_level() -> proxy_wasm::types::LogLevel {
    use proxy_wasm::types::LogLevel;
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_log_level(return_level: *mut u32) -> u32;
    }
    let mut level: u32 = LogLevel::Info as u32;
    // SAFETY: the host writes one u32 through the pointer, which is valid for the call.
    let status = unsafe { proxy_get_log_level(&mut level) };
    match (status, level) {
        (0, 0) => LogLevel::Trace,
        (0, 1) => LogLevel::Debug,
        (0, 3) => LogLevel::Warn,
        (0, 4) => LogLevel::Error,
        (0, 5) => LogLevel::Critical,
        _ => LogLevel::Info,
    }
}

/// Lines below Envoy's level are not formatted nor sent across the host boundary (they used to
/// be, at `Trace`, whatever Envoy's level). Called on every configure.
pub(crate) fn follow_host_log_level() {
    #[cfg(target_arch = "wasm32")]
    proxy_wasm::set_log_level(host_log_level());
}

// Host calls are restricted while the module initializes (Envoy: "restricted_callback"), so the
// level starts at Info and follows Envoy's from the first `on_configure`.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(Root::default()) });
}}
