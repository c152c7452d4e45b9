// What one host call costs Envoy: the floor (noop_filter.rs, which includes this file when built
// with `--cfg probes`) plus exactly one more crossing per request, chosen at build time with `--cfg probe="NAME"`. bench/host_calls.py
// builds every probe, counts Envoy's instructions per request for each (callgrind, as
// bench/instructions.py) and reports each probe's difference from the build it adds to.
//
// Probes (the call session-router makes that each stands for):
// - `response_headers`: exports a no-op `proxy_on_response_headers` (session-router exports it;
//   the floor only the request's). The base of the `response_*` probes below.
// - `response_body`: also a no-op `proxy_on_response_body` (called once per response data frame;
//   the proxy-wasm SDK exported it, session-router without the SDK does not).
// - `metric`: one counter increment (`proxy_increment_metric`), per decision and per host.
// - `shared_empty`: reads an empty shared-data key: Envoy returns its CAS value and no data (the
//   health change signal read on every request).
// - `shared_record`: reads a 40-byte shared-data value (the health table itself): Envoy calls
//   back into the VM to allocate the copy.
// - `property_flags`: `response.flags` (`proxy_get_property`), read in `on_log` for passive health.
// - `property_address`: `upstream.address`, read in `on_log` to spot a fallback that served.
// - `response_header_get`: reads `:status` from the response headers.
// - `response_header_remove`: removes a response header (the target header scrub).

#[allow(dead_code)]
#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        data_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, size: usize, cas: u32) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, data: *mut *mut u8, data_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        data_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
}

#[allow(dead_code)]
const HTTP_RESPONSE_HEADERS: u32 = 2;

/// Frees what the host allocated through `proxy_on_memory_allocate`.
#[allow(dead_code)]
fn free(data: *mut u8, size: usize) {
    if !data.is_null() {
        // SAFETY: allocated by proxy_on_memory_allocate as a Vec of capacity size.max(1).
        unsafe { drop(Vec::from_raw_parts(data, size, size.max(1))) }
    }
}

/// The probe's call on the request path (called by the floor's `proxy_on_request_headers`).
fn probe_request() {
    #[cfg(probe = "metric")]
    {
        static mut ID: u32 = 0;
        // SAFETY: a wasm VM is single-threaded; pointers to live locals and statics.
        unsafe {
            if ID == 0 {
                let name = b"probe.counter";
                proxy_define_metric(0, name.as_ptr(), name.len(), &raw mut ID);
            }
            proxy_increment_metric(ID, 1);
        }
    }
    #[cfg(any(probe = "shared_empty", probe = "shared_record"))]
    {
        let key: &[u8] = if cfg!(probe = "shared_empty") { b"probe.empty" } else { b"probe.record" };
        let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0, 0);
        // SAFETY: pointers to live locals.
        unsafe {
            if proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) != 0 {
                let value: &[u8] = if cfg!(probe = "shared_empty") { b"" } else { &[b'x'; 40] };
                proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), 0);
            }
        }
        free(data, size);
    }
}

#[allow(unused_unsafe, unused_mut)]
#[unsafe(no_mangle)]
#[cfg(not(any(probe = "metric", probe = "shared_empty", probe = "shared_record")))]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _headers: usize, _end_of_stream: u32) -> u32 {
    let (mut data, mut size) = (std::ptr::null_mut(), 0);
    // SAFETY: pointers to live locals and constants.
    unsafe {
        #[cfg(probe = "property_flags")]
        {
            let path = b"response\0flags";
            proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
        }
        #[cfg(probe = "property_address")]
        {
            let path = b"upstream\0address";
            proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
        }
        #[cfg(probe = "response_header_get")]
        {
            let name = b":status";
            proxy_get_header_map_value(HTTP_RESPONSE_HEADERS, name.as_ptr(), name.len(), &mut data, &mut size);
        }
        #[cfg(probe = "response_header_remove")]
        {
            let name = b"x-probe";
            proxy_remove_header_map_value(HTTP_RESPONSE_HEADERS, name.as_ptr(), name.len());
        }
    }
    free(data, size);
    0 // Continue
}

#[unsafe(no_mangle)]
#[cfg(probe = "response_body")]
pub extern "C" fn proxy_on_response_body(_context_id: u32, _size: usize, _end_of_stream: u32) -> u32 {
    0 // Continue
}
