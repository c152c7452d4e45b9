//! The proxy-wasm ABI 0.2.1 entry points: what Envoy calls, dispatched to the root contexts
//! ([`Root`], one per plugin sharing this VM) and the HTTP contexts ([`Http`], one per stream).
//!
//! Only the callbacks the filter implements are exported, so Envoy never crosses into the VM for
//! a request body, trailers or anything else it has no use for. Envoy runs a VM's callbacks one
//! at a time on its worker thread and none of the host calls made here calls back into the VM
//! (but for `proxy_on_memory_allocate`, which touches no context), so one `RefCell` holds every
//! context; a callback that still found it borrowed is answered with the default (`Continue`,
//! nothing done) and logged, never a trap.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::host::{self, Action, LogLevel};
use super::http::Http;
use super::root::Root;

/// Context ids are small integers Envoy hands out in sequence: a multiplicative hash spreads
/// them over hashbrown's control bytes, with no per-VM random seed to draw.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type ById<T> = HashMap<u32, T, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Contexts {
    /// One per plugin sharing the VM: a handful, searched in order.
    roots: Vec<(u32, Root)>,
    http: ById<Http>,
}

impl Contexts {
    fn root(&mut self, id: u32) -> Option<&mut Root> {
        self.roots.iter_mut().find(|(i, _)| *i == id).map(|(_, r)| r)
    }
}

thread_local! {
    // Const-initialized: no lazy initialization to check on every callback.
    static CONTEXTS: RefCell<Contexts> = const {
        RefCell::new(Contexts { roots: Vec::new(), http: HashMap::with_hasher(BuildHasherDefault::new()) })
    };
}

/// Runs `f` on the contexts; `None` when they are borrowed (a callback re-entered).
fn with<T>(f: impl FnOnce(&mut Contexts) -> T) -> Option<T> {
    let out = CONTEXTS.with(|c| c.try_borrow_mut().ok().map(|mut c| f(&mut c)));
    if out.is_none() {
        let _ = host::log(LogLevel::Error, "session-router: a callback re-entered the VM; ignored");
    }
    out
}

// Host calls are restricted while the module initializes (Envoy: "restricted_callback"): the
// logger starts at Info and follows Envoy's level from the first `on_configure`.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: the reactor's one-time constructor call, before any other export runs.
    unsafe { __wasm_call_ctors() };
    super::logger::init();
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Envoy allocates every buffer it hands the VM through this: a boxed slice of exactly `size`
/// bytes (not zeroed: the host fills it), which the host call that receives it takes over as a
/// `Vec` of that length and capacity (src/filter/host.rs).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(id: u32, root_id: u32) {
    with(|c| {
        if root_id == 0 {
            c.roots.retain(|(i, _)| *i != id);
            c.roots.push((id, Root::default()));
        } else if let Some(root) = c.root(root_id) {
            let http = root.new_http();
            c.http.insert(id, http);
        }
    });
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(_root_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(root_id: u32, size: usize) -> bool {
    with(|c| c.root(root_id).is_some_and(|r| r.on_configure(size))).unwrap_or(false)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    with(|c| c.root(root_id).map(Root::on_tick));
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_http_call_response(
    root_id: u32,
    token: u32,
    _headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    with(|c| c.root(root_id).map(|r| r.on_http_call_response(token, body_size)));
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(id: u32, _headers: usize, _end_of_stream: bool) -> u32 {
    with(|c| c.http.get_mut(&id).map(Http::on_request_headers)).flatten().unwrap_or(Action::Continue) as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(id: u32, _headers: usize, _end_of_stream: bool) -> u32 {
    with(|c| c.http.get_mut(&id).map(Http::on_response_headers)).flatten().unwrap_or(Action::Continue) as u32
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_log(id: u32) {
    with(|c| c.http.get_mut(&id).map(Http::on_log));
}

/// Every context is done when Envoy says so (no context holds work past its stream or plugin).
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(_id: u32) -> bool {
    true
}

/// A stream's context is dropped here (its in-flight count ends), as is a removed plugin's root.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(id: u32) {
    with(|c| {
        if c.http.remove(&id).is_none() {
            c.roots.retain(|(i, _)| *i != id);
        }
    });
}
