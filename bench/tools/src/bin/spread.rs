//! Spread and movement of session-router's placements, natively, on the bench's session keys.
//!
//! `spread keys N FILE` writes session keys 0..N, one a line (what bench/run.sh sends through
//! Envoy).
//!
//! `spread run SCENARIOS N PLACEMENT[,PLACEMENT…]` reads scenarios, one a line:
//!   `name|add_address=weight|remove_address|address=weight,address=weight,…`
//! and for every scenario and placement (a number: the ring with that many vnodes per weight;
//! `rendezvous`: the rendezvous table) compiles the filter's own `Config`, places keys 0..N, and
//! prints one JSON object a line:
//! per-host counts (in the scenario's host order), keys moved when the extra host is added and
//! when the named host is removed, the optimum for each, points, memory, and build time.
//!
//! `spread latency` times single lookups of the rendezvous table — hash, owner and the first two
//! fallbacks, what an override_host request with 2 fallbacks asks — one at a time, at 10, 100 and
//! 1,000 hosts, for keys in turn from three pools (2^20 keys: a slot is remembered only by chance,
//! 1 in 16 as 16 slots share each of the VM's 65,536 fallback cache entries; the 4,096 keys
//! `cargo bench` cycles; 64 keys), and prints percentiles in ns (the clock's own cost, the median
//! of timing nothing, subtracted), then the placement memory: the table (`memory_bytes`) and the
//! fallback cache every table of a VM shares.

use std::time::Instant;

use session_router::config::Config;
use session_router::murmur3::hash64;
use session_router::rendezvous::Rendezvous;
use session_router::ring::Ring;
use session_router_bench_tools::session_key;

fn die(msg: &str) -> ! {
    eprintln!("spread: {msg}");
    std::process::exit(2)
}

struct Scenario {
    name: String,
    hosts: Vec<(String, u32)>,
    add: (String, u32),
    remove: String,
}

fn host(s: &str) -> (String, u32) {
    match s.rsplit_once('=') {
        Some((a, w)) => (a.to_owned(), w.parse().unwrap_or_else(|_| die(&format!("bad weight in {s}")))),
        None => (s.to_owned(), 1),
    }
}

fn parse(line: &str) -> Scenario {
    let parts: Vec<&str> = line.split('|').collect();
    let [name, add, remove, hosts] = parts[..] else { die(&format!("bad scenario line: {line}")) };
    Scenario {
        name: name.to_owned(),
        hosts: hosts.split(',').map(host).collect(),
        add: host(add),
        remove: remove.to_owned(),
    }
}

/// `vnodes` 0: the rendezvous table.
fn config(hosts: &[(String, u32)], vnodes: u32) -> Config {
    let list: Vec<String> =
        hosts.iter().map(|(a, w)| format!(r#"{{"address":"{a}","weight":{w}}}"#)).collect();
    let placement = if vnodes == 0 {
        r#""placement":{"algorithm":"rendezvous"}"#.to_owned()
    } else {
        format!(r#""placement":{{"algorithm":"ring"}},"vnodes_per_weight":{vnodes}"#)
    };
    let json = format!(
        r#"{{"hosts":[{}],"sources":[{{"type":"cookie","name":"sid"}}],
            "target":{{"header":"x-gateway-destination-endpoint"}},{placement}}}"#,
        list.join(",")
    );
    Config::parse(json.as_bytes(), |_| None).unwrap_or_else(|e| die(&format!("config: {e}")))
}

/// Owner id of every hash.
fn place<'a>(cfg: &'a Config, hashes: &[u64]) -> Vec<&'a str> {
    hashes.iter().map(|&h| cfg.hosts[cfg.placement.owner(h)].id.as_str()).collect()
}

fn build_ms(hosts: &[(String, u32)], vnodes: u32) -> f64 {
    let mut sorted: Vec<&(String, u32)> = hosts.iter().collect();
    sorted.sort();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            if vnodes == 0 {
                let table = Rendezvous::build(sorted.iter().map(|(id, w)| (id.as_bytes(), *w)));
                std::hint::black_box(table).ok();
            } else {
                let ring = Ring::build(sorted.iter().map(|(id, w)| (id.as_bytes(), w * vnodes)));
                std::hint::black_box(ring).ok();
            }
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn run(scenarios_file: &str, n: u64, vnodes_list: &str) {
    let text =
        std::fs::read_to_string(scenarios_file).unwrap_or_else(|e| die(&format!("{scenarios_file}: {e}")));
    let scenarios: Vec<Scenario> = text.lines().filter(|l| !l.trim().is_empty()).map(parse).collect();
    let vnodes: Vec<u32> = vnodes_list
        .split(',')
        .map(|v| if v == "rendezvous" { 0 } else { v.parse().unwrap_or_else(|_| die("bad placement")) })
        .collect();
    let hashes: Vec<u64> = (0..n).map(|k| hash64(session_key(k).as_bytes())).collect();
    for s in &scenarios {
        for &v in &vnodes {
            let base = config(&s.hosts, v);
            let before = place(&base, &hashes);
            let counts: Vec<usize> =
                s.hosts.iter().map(|(a, _)| before.iter().filter(|&&o| o == a.as_str()).count()).collect();

            let mut added_hosts = s.hosts.clone();
            added_hosts.push(s.add.clone());
            let added = config(&added_hosts, v);
            let after_add = place(&added, &hashes);
            let moved_add = after_add.iter().zip(&before).filter(|(a, b)| a != b).count();
            // Moved between hosts that were there before: pure disruption (0 for a consistent ring).
            let moved_add_elsewhere =
                after_add.iter().zip(&before).filter(|(a, b)| a != b && **a != s.add.0.as_str()).count();
            let total_weight: u32 = s.hosts.iter().map(|h| h.1).sum();
            let add_optimum = n as f64 * f64::from(s.add.1) / f64::from(total_weight + s.add.1);

            let removed_hosts: Vec<(String, u32)> =
                s.hosts.iter().filter(|h| h.0 != s.remove).cloned().collect();
            let removed = config(&removed_hosts, v);
            let after_remove = place(&removed, &hashes);
            let moved_remove = after_remove.iter().zip(&before).filter(|(a, b)| a != b).count();
            let moved_remove_elsewhere =
                after_remove.iter().zip(&before).filter(|(a, b)| a != b && **b != s.remove.as_str()).count();
            let remove_optimum = before.iter().filter(|&&o| o == s.remove).count();

            let counts: Vec<String> = counts.iter().map(usize::to_string).collect();
            let weights: Vec<String> = s.hosts.iter().map(|h| h.1.to_string()).collect();
            println!(
                "{{\"scenario\":\"{}\",\"placement\":\"{}\",\"vnodes\":{v},\"keys\":{n},\"hosts\":{},\"weights\":[{}],\"counts\":[{}],\
                 \"moved_add\":{moved_add},\"add_optimum\":{add_optimum:.1},\"moved_add_elsewhere\":{moved_add_elsewhere},\
                 \"moved_remove\":{moved_remove},\"remove_optimum\":{remove_optimum},\
                 \"moved_remove_elsewhere\":{moved_remove_elsewhere},\
                 \"points\":{},\"memory_bytes\":{},\"build_ms\":{:.3}}}",
                s.name,
                if v == 0 { "rendezvous" } else { "ring" },
                s.hosts.len(),
                weights.join(","),
                counts.join(","),
                base.placement.point_count(),
                base.placement.memory_bytes(),
                build_ms(&s.hosts, v),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |i: usize| args.get(i).cloned().unwrap_or_else(|| die("missing argument"));
    match args.get(1).map(String::as_str) {
        Some("keys") => {
            let n: u64 = get(2).parse().unwrap_or_else(|_| die("bad N"));
            let mut text = String::with_capacity(n as usize * 33);
            for k in 0..n {
                text.push_str(&session_key(k));
                text.push('\n');
            }
            let path = get(3);
            std::fs::write(&path, text).unwrap_or_else(|e| die(&format!("{path}: {e}")));
        }
        Some("run") => run(&get(2), get(3).parse().unwrap_or_else(|_| die("bad N")), &get(4)),
        Some("latency") => latency(),
        _ => die(
            "usage: spread keys N FILE | spread run SCENARIOS N PLACEMENT[,PLACEMENT…] (vnodes or rendezvous) | spread latency",
        ),
    }
}

/// Percentiles of single-lookup times (see the module doc).
fn latency() {
    const SAMPLES: usize = 400_000;
    let keys: Vec<u64> = (0..1u64 << 20).map(|i| hash64(session_key(i).as_bytes())).collect();
    let overhead = {
        let mut t: Vec<u64> = (0..SAMPLES)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(());
                start.elapsed().as_nanos() as u64
            })
            .collect();
        t.sort_unstable();
        t[t.len() / 2]
    };
    println!("clock overhead (median of timing nothing): {overhead} ns");
    let mut memory = Vec::new();
    println!("| hosts | keys in turn | p50 ns | p90 ns | p99 ns | max ns |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in [10usize, 100, 1000] {
        let ids: Vec<String> = (0..n).map(|i| format!("10.0.{}.{}:8080", i / 200, i % 200 + 1)).collect();
        let table = Rendezvous::build(ids.iter().map(|id| (id.as_bytes(), 1)))
            .unwrap_or_else(|e| die(&format!("{e}")));
        for pool in [1usize << 20, 4096, 64] {
            // A table of its own (its own tag in the VM's fallback cache): nothing remembered yet.
            let fresh = table.clone();
            // Warm-up: one pass over the pool (or as many lookups as samples for the large one).
            for &k in keys.iter().take(pool.min(SAMPLES)) {
                std::hint::black_box(fresh.walk(k).take(3).fold(0, |a, h| a ^ h));
            }
            let mut t: Vec<u64> = (0..SAMPLES)
                .map(|i| {
                    let k = keys[(i + pool / 2) % pool];
                    let start = Instant::now();
                    std::hint::black_box(fresh.walk(std::hint::black_box(k)).take(3).fold(0, |a, h| a ^ h));
                    (start.elapsed().as_nanos() as u64).saturating_sub(overhead)
                })
                .collect();
            t.sort_unstable();
            let pct = |p: usize| t[(t.len() * p / 100).min(t.len() - 1)];
            println!("| {n} | {pool} | {} | {} | {} | {} |", pct(50), pct(90), pct(99), t[t.len() - 1]);
        }
        memory.push((n, table.memory_bytes()));
    }
    let cache = Rendezvous::fallback_cache_bytes();
    println!("\n| hosts | table bytes | + fallback cache ({cache} bytes, one per VM) |");
    println!("|---:|---:|---:|");
    for (n, bytes) in memory {
        println!(
            "| {n} | {bytes} ({:.0} KiB) | {} ({:.0} KiB) |",
            bytes as f64 / 1024.0,
            bytes + cache,
            (bytes + cache) as f64 / 1024.0
        );
    }
}
