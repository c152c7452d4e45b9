//! proxy-wasm glue: reads what the core asks for, calls it, applies its decision.
//! On the ABI directly (no SDK): `abi` is what Envoy calls, `host` what the filter calls; a host
//! call's error is handled, never unwrapped.

mod abi;
mod headers;
mod host;
mod http;
mod log_limit;
mod logger;
mod metrics;
mod root;
mod shared;
mod skipped;

use log::warn;

use crate::clock::Now;
use crate::config::Config;
use crate::murmur3::murmur3_x64_128;

pub use root::Root;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Wall-clock time (Unix ms): only for timestamps that leave the process (cookies, JWT `exp`).
pub(crate) fn now_ms() -> u64 {
    host::get_current_time_ns().map_or(0, |ns| ns / 1_000_000)
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

/// The environment variable `name`, as `std::env::var(name).ok()` gives it (`None` when unset,
/// not UTF-8, or `name` is empty or holds `=` or NUL). In the module it reads WASI's environment
/// directly: `std::env` goes through wasi-libc's `getenv`, whose environment set-up links libc's
/// malloc (dlmalloc, 7 KiB) next to the module's own allocator.
#[cfg(target_arch = "wasm32")]
pub(crate) fn env_var(name: &str) -> Option<String> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        #[link_name = "environ_sizes_get"]
        fn wasi_environ_sizes_get(count: *mut usize, size: *mut usize) -> u16;
        #[link_name = "environ_get"]
        fn wasi_environ_get(pointers: *mut *mut u8, buffer: *mut u8) -> u16;
    }
    if name.is_empty() || name.contains(['=', '\0']) {
        return None;
    }
    let (mut count, mut size) = (0usize, 0usize);
    // SAFETY: environ_sizes_get writes one usize to each pointer, both live locals.
    if unsafe { wasi_environ_sizes_get(&mut count, &mut size) } != 0 || count == 0 {
        return None;
    }
    let mut pointers = vec![std::ptr::null_mut::<u8>(); count];
    let mut buffer = vec![0u8; size];
    // SAFETY: environ_get writes `count` pointers and `size` bytes (the sizes it just gave) to
    // buffers of exactly those lengths.
    if unsafe { wasi_environ_get(pointers.as_mut_ptr(), buffer.as_mut_ptr()) } != 0 {
        return None;
    }
    environ_lookup(&buffer, name)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The value of the first `name=value` entry in WASI's NUL-separated environment buffer.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn environ_lookup(buffer: &[u8], name: &str) -> Option<String> {
    buffer.split(|&b| b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        String::from_utf8(value.to_vec()).ok()
    })
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
    let bytes = host::get_property(path).ok().flatten()?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

pub(crate) fn property_string(path: &[&str]) -> Option<String> {
    let bytes = host::get_property(path).ok().flatten()?;
    String::from_utf8(bytes).ok()
}

/// Lines below Envoy's level are not formatted nor sent across the host boundary (they used to
/// be, at `Trace`, whatever Envoy's level). Called on every configure.
pub(crate) fn follow_host_log_level() {
    logger::set_level(host::get_log_level());
}

#[cfg(test)]
mod tests {
    use super::environ_lookup;

    #[test]
    fn environ_lookup_finds_the_first_exact_name() {
        let env = b"PATH=/bin\0SECRET_A=one\0SECRET=two\0SECRET=three\0EMPTY=\0BAD=\xff\0";
        assert_eq!(environ_lookup(env, "SECRET").as_deref(), Some("two"));
        assert_eq!(environ_lookup(env, "SECRET_A").as_deref(), Some("one"));
        assert_eq!(environ_lookup(env, "EMPTY").as_deref(), Some(""));
        assert_eq!(environ_lookup(env, "SECRE"), None, "a prefix of a name is not the name");
        assert_eq!(environ_lookup(env, "BAD"), None, "not UTF-8, as std::env::var");
        assert_eq!(environ_lookup(env, "NONE"), None);
        assert_eq!(environ_lookup(b"", "PATH"), None);
    }
}
