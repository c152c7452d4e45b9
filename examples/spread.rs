//! Prints how evenly each placement spreads keys and how many move on add/remove:
//! the ring at several `vnodes_per_weight` values and the rendezvous table, with memory and
//! build times: `cargo run --release --example spread [keys]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use session_router::murmur3::hash64;
use session_router::placement::Placement;
use session_router::rendezvous::Rendezvous;
use session_router::ring::Ring;

fn ids(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)).collect();
    ids.sort();
    ids
}

/// `None` vnodes: the rendezvous table.
fn build(ids: &[String], vnodes: Option<u32>) -> Placement {
    match vnodes {
        Some(v) => Placement::Ring(Ring::build(ids.iter().map(|id| (id.as_bytes(), v))).unwrap()),
        None => Placement::Rendezvous(Rendezvous::build(ids.iter().map(|id| (id.as_bytes(), 1))).unwrap()),
    }
}

fn main() {
    let keys: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let hashes: Vec<u64> = (0..keys).map(|k| hash64(format!("session-{k}").as_bytes())).collect();
    println!("keys={keys}");
    println!(
        "hosts placement   max/mean  cv      add_moved/opt  remove_moved/opt  stayers_moved  memKiB  build_ms"
    );
    for &n in &[3usize, 10, 100, 1000] {
        for v in [Some(64u32), Some(256), Some(1024), None] {
            let ids = ids(n);
            let t = Instant::now();
            let r = build(&ids, v);
            let build_ms = t.elapsed().as_secs_f64() * 1e3;
            let mut counts = vec![0usize; n];
            let owners: Vec<&str> = hashes.iter().map(|&h| ids[r.owner(h)].as_str()).collect();
            for &h in &hashes {
                counts[r.owner(h)] += 1;
            }
            let mean = keys as f64 / n as f64;
            let max = *counts.iter().max().unwrap() as f64;
            let var = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let mut ids2 = ids.clone();
            ids2.push("10.9.9.9:8080".into());
            ids2.sort();
            let r2 = build(&ids2, v);
            let mut stayers = 0;
            let moved_add = hashes
                .iter()
                .zip(&owners)
                .filter(|(h, o)| {
                    let now = ids2[r2.owner(**h)].as_str();
                    stayers += usize::from(now != **o && now != "10.9.9.9:8080");
                    now != **o
                })
                .count();
            let ids3: Vec<String> = ids[1..].to_vec();
            let r3 = build(&ids3, v);
            let moved_rm = hashes
                .iter()
                .zip(&owners)
                .filter(|(h, o)| {
                    let now = ids3[r3.owner(**h)].as_str();
                    stayers += usize::from(now != **o && **o != ids[0]);
                    now != **o
                })
                .count();
            let name = v.map_or("rendezvous".to_owned(), |v| format!("ring/{v}"));
            println!(
                "{n:5} {name:<11} {:.3}     {:.4}  {:.3}          {:.3}             {stayers:<13} {:6}  {build_ms:8.1}",
                max / mean,
                var.sqrt() / mean,
                moved_add as f64 / (keys as f64 / (n + 1) as f64),
                moved_rm as f64 / counts[0].max(1) as f64,
                r.memory_bytes() / 1024
            );
        }
    }
}
