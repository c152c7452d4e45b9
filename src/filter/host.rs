//! The host calls the filter makes, on the proxy-wasm ABI 0.2.1 directly (no SDK): each returns
//! the host's status as an error instead of trapping on one it did not expect, and a buffer the
//! host returns was allocated by this module's `proxy_on_memory_allocate` (src/filter/abi.rs), so
//! it is taken over as a `Vec` of exactly its length.
//!
//! The names and shapes follow the proxy-wasm Rust SDK's `hostcalls` (Apache-2.0), which this
//! replaces; the module is 0 SDK code and Envoy calls no callback the filter does not implement.

use std::ptr::{null, null_mut};

/// Why a host call failed: the ABI's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    NotFound,
    BadArgument,
    SerializationFailure,
    ParseFailure,
    Empty,
    CasMismatch,
    InternalFailure,
    Unimplemented,
    /// A code this ABI version does not define.
    Other(u32),
}

impl Status {
    fn check(code: u32) -> Result<(), Status> {
        Err(match code {
            0 => return Ok(()),
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            10 => Status::InternalFailure,
            12 => Status::Unimplemented,
            other => Status::Other(other),
        })
    }
}

/// What the host does with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum BufferType {
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

/// The ABI's names for them.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MapType {
    HttpRequestHeaders = 0,
    HttpResponseHeaders = 2,
    HttpCallResponseHeaders = 6,
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, size: usize, cas: u32)
    -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

/// Takes over a buffer the host returned (null: none).
///
/// # Safety
/// `data` is null or was allocated by `proxy_on_memory_allocate(size)` and is owned by the caller.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    // SAFETY: per the contract above, a boxed slice of exactly `size` bytes.
    (!data.is_null()).then(|| unsafe { Vec::from_raw_parts(data, size, size) })
}

/// One host call that returns a buffer: `Ok(None)` for NotFound or no data.
fn fetch(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match Status::check(call(&mut data, &mut size)) {
        // SAFETY: on success the host wrote a buffer it allocated through this module (or null).
        Ok(()) => Ok(unsafe { owned(data, size) }),
        Err(Status::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    // SAFETY: a valid pointer and length for the call's duration; the host only reads them.
    Status::check(unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) })
}

/// Envoy's log level for wasm; `Info` should the host answer oddly.
pub fn get_log_level() -> LogLevel {
    let mut level: u32 = LogLevel::Info as u32;
    // SAFETY: the host writes one u32 through a pointer to a live local.
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

/// Wall-clock time in ns since the Unix epoch.
pub fn get_current_time_ns() -> Result<u64, Status> {
    let mut ns: u64 = 0;
    // SAFETY: the host writes one u64 through a pointer to a live local.
    Status::check(unsafe { proxy_get_current_time_nanoseconds(&mut ns) })?;
    Ok(ns)
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), Status> {
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn get_buffer(kind: BufferType, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: the host writes a pointer and a length through two live locals.
    fetch(|data, size| unsafe { proxy_get_buffer_bytes(kind as u32, start, max, data, size) })
}

/// The serialized header pairs of `map` (proxy-wasm's map encoding).
pub fn get_map_pairs(map: MapType) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: as `get_buffer`.
    fetch(|data, size| unsafe { proxy_get_header_map_pairs(map as u32, data, size) })
}

pub fn get_map_value_bytes(map: MapType, key: &str) -> Result<Option<Vec<u8>>, Status> {
    // SAFETY: `key` is valid for the call; the host writes through two live locals. A header
    // that exists but is empty comes back as a null buffer: `Some(empty)`, not `None`.
    let mut found = false;
    let value = fetch(|data, size| {
        let code = unsafe { proxy_get_header_map_value(map as u32, key.as_ptr(), key.len(), data, size) };
        found = code == 0;
        code
    })?;
    Ok(if found { Some(value.unwrap_or_default()) } else { None })
}

/// A header's value as text; `None` when it is missing or not UTF-8.
pub fn get_map_value(map: MapType, key: &str) -> Result<Option<String>, Status> {
    Ok(get_map_value_bytes(map, key)?.and_then(|v| String::from_utf8(v).ok()))
}

/// Sets `key` to `value` (replacing every value it had), or removes it.
pub fn set_map_value(map: MapType, key: &str, value: Option<&str>) -> Result<(), Status> {
    // SAFETY: pointers and lengths valid for the call; the host only reads them.
    Status::check(unsafe {
        match value {
            Some(v) => {
                proxy_replace_header_map_value(map as u32, key.as_ptr(), key.len(), v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map as u32, key.as_ptr(), key.len()),
        }
    })
}

pub fn add_map_value(map: MapType, key: &str, value: &str) -> Result<(), Status> {
    // SAFETY: pointers and lengths valid for the call; the host only reads them.
    Status::check(unsafe {
        proxy_add_header_map_value(map as u32, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

/// An Envoy attribute by path (`["response", "flags"]`): its bytes, `None` when it has none.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
    let joined = path.join("\0");
    // SAFETY: `joined` is valid for the call; the host writes through two live locals.
    fetch(|data, size| unsafe { proxy_get_property(joined.as_ptr(), joined.len(), data, size) })
}

/// A shared-data value and its CAS value (`None`, `None` when the key does not exist).
pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: `key` is valid for the call; the host writes through three live locals.
    match Status::check(unsafe {
        proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
    }) {
        // SAFETY: on success the buffer (or null) was allocated through this module.
        Ok(()) => Ok((unsafe { owned(data, size) }, (cas != 0).then_some(cas))),
        Err(Status::NotFound) => Ok((None, None)),
        Err(e) => Err(e),
    }
}

/// Writes a shared-data value; with `cas`, only if the key still has that CAS value.
pub fn set_shared_data(key: &str, value: Option<&[u8]>, cas: Option<u32>) -> Result<(), Status> {
    let (ptr, len) = value.map_or((null(), 0), |v| (v.as_ptr(), v.len()));
    // SAFETY: pointers and lengths valid for the call; the host only reads them.
    Status::check(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), ptr, len, cas.unwrap_or(0)) })
}

/// proxy-wasm's map encoding: the count, each name and value length, then each name and value
/// with a NUL after it (all integers u32 little-endian).
fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(n, v)| n.len() + v.len() + 10).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Answers the request locally with `status`, `headers` and `body`.
pub fn send_http_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    let headers = serialize_map(headers);
    // SAFETY: pointers and lengths valid for the call; the host only reads them.
    Status::check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Sends an HTTP request to `cluster` (no body, no trailers); the answer arrives as
/// `proxy_on_http_call_response` with the returned token.
pub fn dispatch_http_call(cluster: &str, headers: &[(&str, &str)], timeout_ms: u32) -> Result<u32, Status> {
    let headers = serialize_map(headers);
    let trailers = serialize_map(&[]);
    let mut token: u32 = 0;
    // SAFETY: pointers and lengths valid for the call; the host writes one u32 to a live local.
    Status::check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            null(),
            0,
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    // SAFETY: `name` is valid for the call; the host writes one u32 to a live local.
    Status::check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), Status> {
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
    // SAFETY: no pointers.
    Status::check(unsafe { proxy_record_metric(id, value) })
}
