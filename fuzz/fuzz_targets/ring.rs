//! `ring::Ring`: the consistent-hash ring on random host sets and keys.
//!
//! Raw input: one host per line, `id <TAB> points` (points default 1); lines starting with
//! `key ` are session keys (hashed with murmur3 as the router does).
//! Structured input: arbitrary ids (duplicates included), point counts (zero included), keys
//! and an eligibility predicate.
//!
//! Checks: `build` never panics and fails only for no hosts or a host without points;
//! `host_count`/`point_count` match; `owner` returns an index below the host count and equals
//! a from-the-spec reference (README "The ring": first point clockwise of
//! `murmur3(id ‖ 0x00 ‖ r as u32 LE).h1`, position in the top 48 bits, ties by index);
//! `walk` yields distinct hosts, starts at the owner and covers every host; `first_eligible`
//! returns the first walked host the predicate accepts, and `None` only when it accepts none;
//! with distinct ids, listing the hosts in another order keeps every key on the same id.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_router::murmur3::hash64;
use session_router::ring::{Ring, RingError};
use session_router_fuzz::{Input, input};

#[derive(Arbitrary, Debug)]
struct Built {
    hosts: Vec<(Vec<u8>, u8)>,
    keys: Vec<u64>,
    eligible: u64,
    rotate: u8,
}

const MASK: u64 = 0xffff;

/// The ring as README specifies it, built the slow obvious way: (position, host index) pairs.
fn reference_points(hosts: &[(Vec<u8>, u32)]) -> Vec<(u64, usize)> {
    let mut points: Vec<(u64, usize)> = Vec::new();
    for (i, (id, n)) in hosts.iter().enumerate() {
        for r in 0..*n {
            let mut bytes = id.clone();
            bytes.push(0);
            bytes.extend_from_slice(&r.to_le_bytes());
            points.push((hash64(&bytes) & !MASK, i));
        }
    }
    points.sort();
    points
}

/// The first point clockwise: at or after the key's position, else the first of the circle.
fn reference_owner(points: &[(u64, usize)], hash: u64) -> usize {
    let key = hash & !MASK;
    points.iter().find(|(p, _)| *p >= key).or(points.first()).map(|&(_, i)| i).expect("points")
}

fn check(hosts: &[(Vec<u8>, u32)], keys: &[u64], eligible: u64) -> Option<Ring> {
    let ring = match Ring::build(hosts.iter().map(|(id, n)| (id.as_slice(), *n))) {
        Ok(r) => r,
        Err(RingError::NoHosts) => {
            assert!(hosts.is_empty());
            return None;
        }
        Err(RingError::NoPoints(i)) => {
            assert_eq!(hosts[i].1, 0, "NoPoints for a host with points");
            return None;
        }
        Err(e) => panic!("unexpected {e:?} for {} hosts", hosts.len()),
    };
    assert!(hosts.iter().all(|h| h.1 > 0), "a host without points accepted");
    let n = hosts.len();
    assert_eq!(ring.host_count(), n);
    assert_eq!(ring.point_count() as u64, hosts.iter().map(|h| u64::from(h.1)).sum::<u64>());
    let accepts = |h: usize| eligible >> (h % 64) & 1 == 1;
    let reference = (ring.point_count() <= 4096).then(|| reference_points(hosts));
    for &k in keys.iter().take(32) {
        let owner = ring.owner(k);
        assert!(owner < n, "owner {owner} of {n}");
        if let Some(points) = &reference {
            assert_eq!(
                owner,
                reference_owner(points, k),
                "owner differs from the README's ring for key {k:#x}"
            );
        }
        let walked: Vec<usize> = ring.walk(k).collect();
        assert_eq!(walked.first(), Some(&owner), "walk does not start at the owner");
        let mut seen = vec![false; n];
        for &h in &walked {
            assert!(h < n);
            assert!(!seen[h], "walk yields host {h} twice");
            seen[h] = true;
        }
        assert_eq!(walked.len(), n, "walk misses hosts");
        let first = ring.first_eligible(k, accepts);
        assert_eq!(first, walked.iter().copied().find(|&h| accepts(h)));
        match first {
            Some(h) => assert!(accepts(h)),
            None => assert!((0..n).all(|h| !accepts(h))),
        }
        assert_eq!(ring.first_eligible(k, |_| true), Some(owner));
    }
    Some(ring)
}

fn run(hosts: Vec<(Vec<u8>, u32)>, keys: &[u64], eligible: u64, rotate: usize) {
    let Some(ring) = check(&hosts, keys, eligible) else { return };
    let mut ids: Vec<&Vec<u8>> = hosts.iter().map(|h| &h.0).collect();
    ids.sort();
    ids.dedup();
    if ids.len() == hosts.len() && !hosts.is_empty() {
        // Host order does not matter: the same keys land on the same ids.
        let mut rotated = hosts.clone();
        rotated.rotate_left(rotate % hosts.len());
        let other = Ring::build(rotated.iter().map(|(id, n)| (id.as_slice(), *n))).expect("same hosts");
        for &k in keys.iter().take(32) {
            assert_eq!(hosts[ring.owner(k)].0, rotated[other.owner(k)].0, "owner depends on host order");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match input(data) {
        Input::Raw(raw) => {
            let mut hosts = Vec::new();
            let mut keys = vec![0, u64::MAX, 1 << 16];
            for line in raw.split(|&b| b == b'\n') {
                if let Some(key) = line.strip_prefix(b"key ") {
                    keys.push(hash64(key));
                    continue;
                }
                let mut f = line.splitn(2, |&b| b == b'\t');
                let id = f.next().unwrap_or_default().to_vec();
                let points = f
                    .next()
                    .and_then(|p| std::str::from_utf8(p).ok()?.trim().parse::<u32>().ok())
                    .unwrap_or(1);
                hosts.push((id, points.min(4096)));
            }
            hosts.truncate(256);
            run(hosts, &keys, 0x5555_5555_5555_5555, 1);
        }
        Input::Structured(u) => {
            let Ok(b) = Built::arbitrary_take_rest(u) else { return };
            let hosts: Vec<(Vec<u8>, u32)> =
                b.hosts.into_iter().take(200).map(|(id, n)| (id, u32::from(n % 64))).collect();
            run(hosts, &b.keys, b.eligible, usize::from(b.rotate));
        }
    }
});
