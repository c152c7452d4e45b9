#![allow(clippy::unwrap_used)]
use session_router::murmur3::hash64;
use session_router::rendezvous::Rendezvous;
use std::time::Instant;
fn main() {
    for n in [10usize, 100, 1000] {
        let mut ids: Vec<String> = (0..n).map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)).collect();
        ids.sort();
        let t = Instant::now();
        let r = Rendezvous::build(ids.iter().map(|id| (id.as_bytes(), 1))).unwrap();
        let full = t.elapsed();
        let mut ids2 = ids.clone();
        ids2.push("10.9.9.9:8080".into());
        ids2.sort();
        let t = Instant::now();
        let (r2, p) = r.rebuild(ids2.iter().map(|id| (id.as_bytes(), 1))).unwrap();
        let add = t.elapsed();
        let full2 = Rendezvous::build(ids2.iter().map(|id| (id.as_bytes(), 1))).unwrap();
        assert!(r2 == full2, "add differs");
        let ids3: Vec<String> = ids[1..].to_vec();
        let t = Instant::now();
        let (r3, p3) = r.rebuild(ids3.iter().map(|id| (id.as_bytes(), 1))).unwrap();
        let rm = t.elapsed();
        let full3 = Rendezvous::build(ids3.iter().map(|id| (id.as_bytes(), 1))).unwrap();
        assert!(r3 == full3, "rm differs");
        // slot spread
        let mut counts = vec![0usize; n];
        for s in 0..(1u64 << 20) {
            counts[r.owner(s << 44)] += 1;
        }
        let mean = (1u64 << 20) as f64 / n as f64;
        let var = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let max = *counts.iter().max().unwrap() as f64 / mean;
        // 1M keys
        let mut kc = vec![0usize; n];
        for k in 0..1_000_000u32 {
            kc[r.owner(hash64(format!("session-{k}").as_bytes()))] += 1;
        }
        let km = *kc.iter().max().unwrap() as f64 / (1e6 / n as f64);
        // walk cost
        let t = Instant::now();
        let mut acc = 0usize;
        for k in 0..2000u64 {
            acc += r.walk(hash64(&k.to_le_bytes())).take(3).sum::<usize>();
        }
        let walk = t.elapsed() / 2000;
        println!(
            "{n}: full {full:?} add {add:?} ({p:?}) rm {rm:?} ({p3:?}) slot cv {:.4} (theory {:.4}) slot max/mean {max:.3} keys1M max/mean {km:.3} walk3 {walk:?} {acc}",
            var.sqrt() / mean,
            (n as f64 / (1u64 << 20) as f64).sqrt()
        );
    }
}
