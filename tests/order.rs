//! src/order.rs against the standard library's sorts: the same order on random inputs of every
//! length up to a few runs of merging, with many ties, and stability where the std sort is stable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::xorshift as rng;
use session_router::order::{sort_by, sort_u64};

/// Lengths around every power of two the bottom-up merge passes through, and some larger ones.
fn lengths() -> Vec<usize> {
    let mut n: Vec<usize> = (0..=70).collect();
    n.extend([127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 4099]);
    n
}

#[test]
fn sort_u64_matches_std() {
    let mut next = rng(0x5eed_0001);
    for n in lengths() {
        for spread in [u64::MAX, 16, 2] {
            let v: Vec<u64> = (0..n).map(|_| next() % spread.max(1)).collect();
            let mut ours = v.clone();
            sort_u64(&mut ours);
            let mut std = v;
            std.sort_unstable();
            assert_eq!(ours, std, "n={n} spread={spread}");
        }
    }
    let mut sorted: Vec<u64> = (0..500).collect();
    sort_u64(&mut sorted);
    assert!(sorted.windows(2).all(|w| w[0] < w[1]));
    let mut reversed: Vec<u64> = (0..500).rev().collect();
    sort_u64(&mut reversed);
    assert_eq!(reversed, (0..500).collect::<Vec<u64>>());
}

#[test]
fn sort_by_is_stable_like_std() {
    let mut next = rng(0x5eed_0002);
    for n in lengths() {
        // Few distinct keys, so most items tie; the second field is the original position.
        let v: Vec<(u64, usize)> = (0..n).map(|i| (next() % 5, i)).collect();
        let mut ours = v.clone();
        sort_by(&mut ours, &|a, b| a.0.cmp(&b.0));
        let mut std = v;
        std.sort_by_key(|a| a.0);
        assert_eq!(ours, std, "n={n}");
    }
}

#[test]
fn sort_by_moves_owned_items() {
    let mut next = rng(0x5eed_0003);
    let v: Vec<String> = (0..300).map(|_| format!("host-{}", next() % 1000)).collect();
    let mut ours = v.clone();
    sort_by(&mut ours, &|a, b| b.cmp(a));
    let mut std = v;
    std.sort_by(|a, b| b.cmp(a));
    assert_eq!(ours, std);
}
