//! Prints how evenly the ring spreads keys and how many move on add/remove, for several
//! `vnodes_per_weight` values: `cargo run --release --example spread [keys]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use session_router::murmur3::hash64;
use session_router::ring::Ring;

fn ring(n: usize, vnodes: u32) -> (Ring, Vec<String>) {
    let mut ids: Vec<String> = (0..n).map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)).collect();
    ids.sort();
    let r = Ring::build(ids.iter().map(|id| (id.as_bytes(), vnodes))).unwrap();
    (r, ids)
}

fn main() {
    let keys: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let hashes: Vec<u64> = (0..keys).map(|k| hash64(format!("session-{k}").as_bytes())).collect();
    println!("keys={keys}");
    println!("hosts vnodes  max/mean  cv      add_moved/opt  remove_moved/opt  points  memKiB");
    for &n in &[3usize, 10, 100, 1000] {
        for &v in &[64u32, 160, 256, 512, 1024] {
            let (r, ids) = ring(n, v);
            let mut counts = vec![0usize; n];
            let owners: Vec<&str> = hashes.iter().map(|&h| ids[r.owner(h)].as_str()).collect();
            for &h in &hashes {
                counts[r.owner(h)] += 1;
            }
            let mean = keys as f64 / n as f64;
            let max = *counts.iter().max().unwrap() as f64;
            let var = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            // add one host
            let mut ids2 = ids.clone();
            ids2.push("10.9.9.9:8080".into());
            ids2.sort();
            let r2 = Ring::build(ids2.iter().map(|id| (id.as_bytes(), v))).unwrap();
            let moved_add = hashes.iter().zip(&owners).filter(|(h, o)| ids2[r2.owner(**h)] != **o).count();
            // remove host 0
            let ids3: Vec<String> = ids[1..].to_vec();
            let r3 = Ring::build(ids3.iter().map(|id| (id.as_bytes(), v))).unwrap();
            let moved_rm = hashes.iter().zip(&owners).filter(|(h, o)| ids3[r3.owner(**h)] != **o).count();
            let removed_share = counts[0];
            println!(
                "{n:5} {v:6}  {:.3}     {:.4}  {:.3}          {:.3}             {:7} {:6}",
                max / mean,
                var.sqrt() / mean,
                moved_add as f64 / (keys as f64 / (n + 1) as f64),
                moved_rm as f64 / removed_share.max(1) as f64,
                r.point_count(),
                r.memory_bytes() / 1024
            );
        }
    }
}
