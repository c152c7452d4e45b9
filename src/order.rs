//! The module's sorts, written once. Each `sort`/`sort_by` of the standard library on a new element
//! type links a whole pattern-defeating quicksort or driftsort into the module (2–5 KiB of wasm
//! each); these are two small bottom-up merge sorts: [`sort_u64`] for the ring's points and
//! [`sort_by`] for every configure-time table (hosts by id, tags, addresses, discovered endpoints,
//! health entries), which sorts indices with a `dyn` comparator so each element type costs only a
//! small permutation step. Both are stable, O(n log n) in the worst case, and allocate one scratch
//! buffer of n elements.

use std::cmp::Ordering;

/// Sorts `items` by `cmp`, stably (equal items keep their order).
pub fn sort_by<T>(items: &mut [T], cmp: &dyn Fn(&T, &T) -> Ordering) {
    let order = {
        let items: &[T] = items;
        permutation(items.len(), &|a, b| match (items.get(a), items.get(b)) {
            (Some(x), Some(y)) => cmp(x, y) == Ordering::Less,
            _ => false,
        })
    };
    apply(&order, &mut |a, b| items.swap(a, b));
}

/// Puts the item at `order[k]` at position `k`, for every `k`, by swaps (`swap(a, b)` exchanges
/// positions `a` and `b`): the only per-type code a sort then needs is one swap.
fn apply(order: &[usize], swap: &mut dyn FnMut(usize, usize)) {
    // at[p]: the original index of the item now at position p; pos[i]: where item i now is.
    let mut at: Vec<usize> = (0..order.len()).collect();
    let mut pos = at.clone();
    for (k, &wanted) in order.iter().enumerate() {
        let (Some(&p), Some(&here)) = (pos.get(wanted), at.get(k)) else { return };
        if p != k {
            swap(k, p);
            if let (Some(a), Some(b)) = (at.get_mut(p), pos.get_mut(here)) {
                *a = here;
                *b = p;
            }
        }
    }
}

/// Sorts `values` ascending.
pub fn sort_u64(values: &mut Vec<u64>) {
    merge_sort(values, |a, b| a < b);
}

/// The indices `0..n` in the order `less` gives them, stably.
fn permutation(n: usize, less: &dyn Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    merge_sort(&mut order, |&a, &b| less(a, b));
    order
}

/// Bottom-up merge sort: runs of 1, 2, 4, … merged back and forth between `v` and one scratch
/// buffer. Stable: on a tie the left run's element comes first.
fn merge_sort<T: Copy>(v: &mut Vec<T>, less: impl Fn(&T, &T) -> bool) {
    let n = v.len();
    if n < 2 {
        return;
    }
    let mut from = std::mem::take(v);
    let mut to = from.clone();
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j) = (start, mid);
            for slot in to.iter_mut().take(end).skip(start) {
                let take_right = match (from.get(i), from.get(j)) {
                    (Some(a), Some(b)) if i < mid && j < end => less(b, a),
                    _ => i >= mid,
                };
                let (k, next) = if take_right { (j, &mut j) } else { (i, &mut i) };
                if let Some(&x) = from.get(k) {
                    *slot = x;
                }
                *next += 1;
            }
            start = end;
        }
        std::mem::swap(&mut from, &mut to);
        width *= 2;
    }
    *v = from;
}
