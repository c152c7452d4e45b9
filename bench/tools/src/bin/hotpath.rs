//! The filter's per-request work, natively: allocations per request (a counting allocator) and a
//! plain loop to run under `valgrind --tool=callgrind` for instructions per request.
//!
//! `hotpath allocs`            prints allocations and bytes per request for each scenario;
//! `hotpath loop SCENARIO N`   runs SCENARIO N times (for callgrind / perf).
//!
//! A "request" here is what `on_http_request_headers` does around the host calls: copy every
//! header into an owned `Vec<(String, Vec<u8>)>` (as `get_map_bytes` returns them), `decide`,
//! `target_value`; plus, when the decision carries one, the `Set-Cookie` string.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use session_router::config::Config;
use session_router::request::{HeaderPairs, SourceAddress};
use session_router::router::{AllUp, decide, target_value};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const NOW: u64 = 1_800_000_000;

fn config(sticky: bool, fallbacks: u32) -> Config {
    let hosts: Vec<String> =
        (1..=10).map(|i| format!(r#"{{"address":"127.0.0.1:{}"}}"#, 18000 + i)).collect();
    let sticky = if sticky {
        format!(r#","sticky_cookie":{{"name":"srv","ttl_seconds":3600,"secret":"{SECRET}","secure":false}}"#)
    } else {
        String::new()
    };
    let json = format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"cookie","name":"sid"}}]{sticky},
            "target":{{"header":"x-gateway-destination-endpoint","fallbacks":{fallbacks}}}}}"#,
        hosts.join(",")
    );
    Config::parse(json.as_bytes(), |_| None).unwrap_or_else(|e| panic!("{e}"))
}

/// The headers Envoy hands the filter for a wrk-style request with one cookie.
fn pairs(cookie: &str) -> Vec<(&'static str, String)> {
    vec![
        (":authority", "bench".to_owned()),
        (":path", "/".to_owned()),
        (":method", "GET".to_owned()),
        (":scheme", "http".to_owned()),
        ("cookie", cookie.to_owned()),
        ("x-forwarded-proto", "http".to_owned()),
        ("x-request-id", "6d3f1c52-8f0a-4d1e-9b7a-2f4c8e1a0b3d".to_owned()),
    ]
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    cfg: Config,
    headers: Vec<(&'static str, String)>,
}

fn scenarios() -> Vec<Scenario> {
    let sticky = config(true, 2);
    let mut ids = 0u128;
    let minted = decide(&sticky, &HeaderPairs::from_pairs([("cookie", "a=b")]), &AllUp, NOW, &mut || {
        ids += 1;
        ids.to_le_bytes()
    });
    let cookie = minted.set_cookie.unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
    vec![
        Scenario {
            name: "original_dst",
            what: "cookie key, 1 target host (d)",
            cfg: config(false, 0),
            headers: pairs("sid=4f2a9c1e7b3d5a60aa"),
        },
        Scenario {
            name: "override_fb2",
            what: "cookie key, 3 target hosts (e)",
            cfg: config(false, 2),
            headers: pairs("sid=4f2a9c1e7b3d5a60aa"),
        },
        Scenario {
            name: "sticky_verify",
            what: "valid sticky cookie, 3 target hosts (f)",
            cfg: config(true, 2),
            headers: pairs(&cookie),
        },
        Scenario {
            name: "sticky_issue",
            what: "no cookie: new session, cookie issued (g)",
            cfg: config(true, 2),
            headers: pairs("theme=dark"),
        },
    ]
}

/// One request's worth of the filter's pure work; returns something so nothing is elided.
fn request(s: &Scenario, ids: &mut dyn FnMut() -> [u8; 16]) -> usize {
    // The address is read only when a `source_ip` source is reached (never here), as in the filter.
    let req = HeaderPairs {
        source: SourceAddress::Lazy(|| Some("127.0.0.1:40000".to_owned())),
        ..HeaderPairs::from_pairs(s.headers.iter().map(|(n, v)| (n, v)))
    };
    let d = decide(&s.cfg, &req, &AllUp, NOW, ids);
    let v = target_value(&s.cfg, &d, &AllUp);
    v.len() + d.set_cookie.map_or(0, |c| c.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut n = 0u128;
    let mut ids = move || {
        n += 1;
        n.to_le_bytes()
    };
    match args.get(1).map(String::as_str) {
        Some("allocs") => {
            println!("{{\"scenarios\":[");
            let all = scenarios();
            for (i, s) in all.iter().enumerate() {
                request(s, &mut ids); // warm
                const N: u64 = 1000;
                let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
                let mut sink = 0;
                for _ in 0..N {
                    sink += request(s, &mut ids);
                }
                std::hint::black_box(sink);
                let (a1, b1) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
                // The header copy alone, to split the total.
                let c0 = ALLOCS.load(Ordering::Relaxed);
                for _ in 0..N {
                    let req: Vec<(String, Vec<u8>)> =
                        s.headers.iter().map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec())).collect();
                    std::hint::black_box(req);
                }
                let c1 = ALLOCS.load(Ordering::Relaxed);
                println!(
                    "  {{\"name\":\"{}\",\"what\":\"{}\",\"allocs_per_request\":{:.1},\"bytes_per_request\":{:.0},\
                     \"header_copy_allocs\":{:.1}}}{}",
                    s.name,
                    s.what,
                    (a1 - a0) as f64 / N as f64,
                    (b1 - b0) as f64 / N as f64,
                    (c1 - c0) as f64 / N as f64,
                    if i + 1 < all.len() { "," } else { "" }
                );
            }
            println!("]}}");
        }
        Some("loop") => {
            let name = args.get(2).map(String::as_str).unwrap_or("override_fb2");
            let count: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
            let all = scenarios();
            let s = all.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no scenario {name}"));
            let mut sink = 0;
            for _ in 0..count {
                sink += request(s, &mut ids);
            }
            println!("{sink}");
        }
        _ => eprintln!("usage: hotpath allocs | hotpath loop SCENARIO N"),
    }
}
