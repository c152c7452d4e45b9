//! The benchmark's floor: the least a proxy-wasm HTTP filter can do and still route — set one
//! constant override header on every request. Written against the proxy-wasm ABI 0.2.1 directly
//! (no SDK, no allocator traffic per request), so its cost is Envoy's wasm boundary and nothing
//! else. The header value is the plugin configuration, verbatim: `name: value`.
//!
//! Built by bench/run.sh with plain rustc (no Cargo project):
//!   rustc --edition 2021 --target wasm32-wasip1 --crate-type cdylib -C opt-level=3 -C panic=abort \
//!     -o target/bench-tools/noop_filter.wasm bench/floor/noop_filter.rs

use std::cell::RefCell;

// bench/host_calls.py builds this file with `--cfg probes --cfg probe="NAME"`: one more host call.
#[cfg(probes)]
include!("host_calls.rs");

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
}

const PLUGIN_CONFIGURATION: u32 = 7;
const HTTP_REQUEST_HEADERS: u32 = 0;

thread_local! {
    static HEADER: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size.max(1));
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _size: usize) -> u32 {
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, size: usize) -> u32 {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: Envoy writes a buffer it allocated through proxy_on_memory_allocate.
    let bytes = unsafe {
        if proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut len) != 0 || data.is_null() {
            return 0;
        }
        Vec::from_raw_parts(data, len, len.max(1))
    };
    let Some(colon) = bytes.iter().position(|&b| b == b':') else { return 0 };
    let name = bytes[..colon].trim_ascii().to_ascii_lowercase();
    let value = bytes[colon + 1..].trim_ascii().to_vec();
    HEADER.with(|h| *h.borrow_mut() = (name, value));
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: usize, _end_of_stream: u32) -> u32 {
    #[cfg(probes)]
    probe_request();
    HEADER.with(|h| {
        let (name, value) = &*h.borrow();
        // SAFETY: pointers and lengths of live slices.
        unsafe {
            proxy_replace_header_map_value(HTTP_REQUEST_HEADERS, name.as_ptr(), name.len(), value.as_ptr(), value.len());
        }
    });
    0 // Continue
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(_context_id: u32) -> u32 {
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_log(_context_id: u32) {}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}
