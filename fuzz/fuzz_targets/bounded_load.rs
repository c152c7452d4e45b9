//! `bounded::place`: the bound check on arbitrary loads, weights and candidate orders.
//!
//! Checks: the chosen host is a candidate; it has room under its capacity unless no candidate
//! has, in which case it is the first; every candidate before it was full; a spill names the
//! first candidate; the capacity is never below 1 while the total is counted in; the same
//! input gives the same answer.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_router::bounded::{BoundedLoad, capacity, place};

#[derive(Arbitrary, Debug)]
struct Input {
    factor_milli: u16,
    loads: Vec<u32>,
    weights: Vec<u16>,
    candidates: Vec<u8>,
    extra_total: u32,
}

fuzz_target!(|input: Input| {
    let b = BoundedLoad { factor_milli: 1001 + u64::from(input.factor_milli) % 9000, spill_unpinned_keys: false };
    let n = input.loads.len().max(1);
    let loads: Vec<u64> = (0..n).map(|h| u64::from(input.loads.get(h).copied().unwrap_or(0))).collect();
    let weight = |h: usize| u64::from(input.weights.get(h).copied().unwrap_or(1).max(1));
    let total: u64 = loads.iter().sum::<u64>() + u64::from(input.extra_total);
    let total_weight: u64 = (0..n).map(weight).sum();
    let candidates: Vec<usize> = input.candidates.iter().map(|&c| usize::from(c) % n).collect();
    let placed = place(&b, candidates.iter().copied(), loads.as_slice(), total, total_weight, weight);
    let again = place(&b, candidates.iter().copied(), loads.as_slice(), total, total_weight, weight);
    assert_eq!(placed, again);
    let Some(p) = placed else {
        assert!(candidates.is_empty());
        return;
    };
    let cap = |h: usize| capacity(&b, total, weight(h), total_weight);
    assert!(cap(candidates[0]) >= 1);
    assert!(candidates.contains(&p.host));
    let room = |h: usize| loads[h] + 1 <= cap(h);
    match candidates.iter().position(|&h| room(h)) {
        Some(i) => {
            assert_eq!(p.host, candidates[i]);
            assert_eq!(p.spilled_from, (candidates[i] != candidates[0]).then_some(candidates[0]));
        }
        None => assert_eq!((p.host, p.spilled_from), (candidates[0], None)),
    }
    assert_eq!(p.capacity, cap(candidates[0]));
});
