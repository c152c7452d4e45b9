//! proxy-wasm glue: reads what the core asks for, calls it, applies its decision.
//! Host calls go through `proxy_wasm::hostcalls` so an error is handled, never unwrapped.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};

use crate::config::Config;
use crate::murmur3::murmur3_x64_128;
use crate::router::{self, AllUp, Decision, Kind, RequestView};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Counter ids, defined once per VM; Envoy shares a metric across workers by name.
#[derive(Clone, Copy, Default)]
struct Metrics {
    pinned: u32,
    hashed: u32,
    new: u32,
    failover: u32,
    cookies_issued: u32,
    cookies_rejected: u32,
    jwt_rejected: u32,
    input_rejected: u32,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| {
            hostcalls::define_metric(MetricType::Counter, name).unwrap_or_else(|e| {
                warn!("session-router: cannot define metric {name}: {e:?}");
                u32::MAX
            })
        };
        Metrics {
            pinned: counter("session_router.decision.pinned"),
            hashed: counter("session_router.decision.hashed"),
            new: counter("session_router.decision.new"),
            failover: counter("session_router.decision.failover"),
            cookies_issued: counter("session_router.cookie.issued"),
            cookies_rejected: counter("session_router.cookie.rejected"),
            jwt_rejected: counter("session_router.jwt.rejected"),
            input_rejected: counter("session_router.input.rejected"),
        }
    }

    fn add(id: u32, n: u64) {
        if id != u32::MAX && n > 0 {
            let _ = hostcalls::increment_metric(id, n as i64);
        }
    }

    fn record(&self, d: &Decision) {
        let kind = match d.kind {
            Kind::Pinned => self.pinned,
            Kind::Failover => self.failover,
            Kind::Hashed(_) => self.hashed,
            Kind::New => self.new,
        };
        Metrics::add(kind, 1);
        Metrics::add(self.cookies_issued, u64::from(d.set_cookie.is_some()));
        Metrics::add(self.cookies_rejected, u64::from(d.rejected.cookie.is_some()));
        Metrics::add(self.jwt_rejected, u64::from(d.rejected.jwt.is_some()));
        Metrics::add(self.input_rejected, u64::from(d.rejected.other));
    }
}

#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    metrics: Option<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                error!("session-router: cannot read plugin configuration: {e:?}");
                return false;
            }
        };
        let config = match Config::parse(&bytes, |var| std::env::var(var).ok()) {
            Ok(c) => c,
            Err(e) => {
                error!("session-router v{VERSION}: configuration rejected: {e}");
                return false;
            }
        };
        let sources: Vec<&str> = config.sources.iter().map(|s| s.kind()).collect();
        info!(
            "session-router v{VERSION}: {} hosts, {} ring points, sources [{}], target {} ({:?}, {} fallbacks), sticky cookie {}",
            config.hosts.len(),
            config.ring.point_count(),
            sources.join(", "),
            config.target.header,
            config.target.encoding,
            config.target.fallbacks,
            config.sticky.as_ref().map_or("off", |s| s.name.as_str()),
        );
        self.metrics.get_or_insert_with(Metrics::define);
        self.config = Some(Rc::new(config));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            config: self.config.clone(),
            metrics: self.metrics.unwrap_or_default(),
            set_cookie: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    config: Option<Rc<Config>>,
    metrics: Metrics,
    set_cookie: Option<String>,
}

impl Context for Http {}

/// The request as the router sees it: every header pair, fetched in one host call.
struct Request {
    headers: Vec<(String, Vec<u8>)>,
}

impl RequestView for Request {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn source_address(&self) -> Option<String> {
        let bytes = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()?;
        String::from_utf8(bytes).ok()
    }
}

fn now_seconds() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// 128 random bits from the host (WASI `random_get`). Should that ever fail, a hash of the
/// time and a counter still gives a unique, well-spread id; it is logged.
fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut id) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        warn!("session-router: random source failed ({e}); deriving a session id");
        let nanos = hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let seed = [
            nanos.to_le_bytes(),
            u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)).to_le_bytes(),
        ]
        .concat();
        let (a, b) = murmur3_x64_128(&seed, 0);
        id[..8].copy_from_slice(&a.to_le_bytes());
        id[8..].copy_from_slice(&b.to_le_bytes());
    }
    id
}

/// The `target.header` value: the chosen host, then up to `fallbacks` distinct successors.
fn target_value(cfg: &Config, d: &Decision) -> String {
    let first = cfg.hosts.get(d.host).map_or("", |h| h.header_value.as_str());
    if cfg.target.fallbacks == 0 {
        return first.to_owned();
    }
    let mut value = first.to_owned();
    for next in cfg
        .ring
        .walk(d.point)
        .filter(|&h| h != d.host)
        .take(cfg.target.fallbacks as usize)
    {
        if let Some(h) = cfg.hosts.get(next) {
            value.push(',');
            value.push_str(&h.header_value);
        }
    }
    value
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(cfg) = self.config.clone() else {
            return Action::Continue;
        };
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let request = Request { headers };
        let decision = router::decide(&cfg, &request, &AllUp, now_seconds(), &mut random_id);
        // Replaces every client-supplied copy of the header.
        let value = target_value(&cfg, &decision);
        if let Err(e) =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, &cfg.target.header, Some(&value))
        {
            error!("session-router: cannot set {}: {e:?}", cfg.target.header);
        }
        if let Some(why) = decision.rejected.cookie {
            debug!("session-router: sticky cookie ignored: {}", why.as_str());
        }
        if let Some(why) = decision.rejected.jwt {
            debug!("session-router: JWT ignored: {}", why.as_str());
        }
        self.metrics.record(&decision);
        self.set_cookie = decision.set_cookie;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(cookie) = self.set_cookie.take()
            && let Err(e) = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie)
        {
            error!("session-router: cannot add set-cookie: {e:?}");
        }
        Action::Continue
    }
}

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}
