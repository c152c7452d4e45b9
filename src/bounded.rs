//! Bounded load for new bindings: consistent hashing with bounded loads (Mirrokni, Thorup,
//! Zadimoghaddam, 2018), as HAProxy's `hash-balance-factor` and Envoy's `hash_balance_factor`
//! apply it, restricted to decisions that create a session binding.
//!
//! A host may take one more binding while `load + 1 ≤ ⌈c × (total + 1) × w / W⌉`, where `load`
//! is its requests in flight, `total` the requests in flight on every host that may take new
//! sessions, `w` its weight and `W` the sum of those hosts' weights. The candidates come in the
//! key's own preference order (its owner, then its fallbacks), so the spill is deterministic
//! given the load. With `c > 1` the capacities sum to more than `total + 1`, so some candidate
//! always has room; should none (a caller passing a partial list), the first candidate takes it.
//!
//! Pure: loads and weights are passed in; the glue keeps the per-worker in-flight counts.

/// The factor is kept in thousandths, so every worker and replica computes the same bound
/// without floating point.
pub const FACTOR_SCALE: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedLoad {
    /// `c × 1000`, above 1000.
    pub factor_milli: u64,
    /// Also steer hashed keys when no sticky cookie pins where they landed (a spilled key can land
    /// elsewhere on its next request). Off by default.
    pub spill_unpinned_keys: bool,
}

/// Per-host state the bound is computed from.
pub trait Loads {
    /// Requests in flight on host `host` (by index).
    fn load(&self, host: usize) -> u64;
}

impl Loads for [u64] {
    fn load(&self, host: usize) -> u64 {
        self.get(host).copied().unwrap_or(0)
    }
}

impl Loads for [u32] {
    fn load(&self, host: usize) -> u64 {
        self.get(host).map_or(0, |&l| u64::from(l))
    }
}

/// What the bound did to one binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub host: usize,
    /// The key's first choice, when it was over the bound and the binding spilled past it.
    pub spilled_from: Option<usize>,
    /// The capacity of the first choice the bound computed (for metrics).
    pub capacity: u64,
}

/// `⌈c × (total + 1) × weight / total_weight⌉`, saturating.
pub fn capacity(b: &BoundedLoad, total: u64, weight: u64, total_weight: u64) -> u64 {
    if total_weight == 0 {
        return u64::MAX;
    }
    let num = u128::from(b.factor_milli) * (u128::from(total) + 1) * u128::from(weight);
    let den = u128::from(FACTOR_SCALE) * u128::from(total_weight);
    div_ceil_saturating(num, den)
}

/// `⌈num / den⌉`, saturating at `u64::MAX`, for `0 < den < 2^127`; by shift and subtract, as a
/// u128 `/` links compiler-builtins' 128-bit division (1 KiB of wasm) into the module for this
/// one call.
fn div_ceil_saturating(num: u128, den: u128) -> u64 {
    let (mut quotient, mut rem) = (0u128, 0u128);
    for bit in (0..128).rev() {
        // rem < den < 2^127, so the shift loses nothing.
        rem = (rem << 1) | ((num >> bit) & 1);
        quotient <<= 1;
        if rem >= den {
            rem -= den;
            quotient |= 1;
        }
        if quotient > u128::from(u64::MAX) {
            return u64::MAX;
        }
    }
    u64::try_from(quotient + u128::from(rem > 0)).unwrap_or(u64::MAX)
}

/// The first of `candidates` (in preference order) with room under the bound.
/// `total` and `total_weight` cover every host that may take new sessions; `weight(h)` is host
/// `h`'s weight. `None` only when `candidates` is empty.
pub fn place(
    b: &BoundedLoad,
    candidates: impl Iterator<Item = usize>,
    loads: &(impl Loads + ?Sized),
    total: u64,
    total_weight: u64,
    weight: impl Fn(usize) -> u64,
) -> Option<Placed> {
    let mut first: Option<(usize, u64)> = None;
    for host in candidates {
        let cap = capacity(b, total, weight(host), total_weight);
        let (first_host, first_cap) = *first.get_or_insert((host, cap));
        if loads.load(host).saturating_add(1) <= cap {
            let spilled_from = (host != first_host).then_some(first_host);
            return Some(Placed { host, spilled_from, capacity: first_cap });
        }
    }
    first.map(|(host, capacity)| Placed { host, spilled_from: None, capacity })
}

#[cfg(test)]
mod tests {
    use super::*;

    const C125: BoundedLoad = BoundedLoad { factor_milli: 1250, spill_unpinned_keys: false };

    #[test]
    fn capacity_is_the_ceiling_of_c_times_the_mean_with_the_new_binding() {
        // 3 equal hosts, 11 in flight: ⌈1.25 × 12 / 3⌉ = 5.
        assert_eq!(capacity(&C125, 11, 1, 3), 5);
        // Nothing in flight: ⌈1.25 × 1 / 3⌉ = 1, so an idle host always has room.
        assert_eq!(capacity(&C125, 0, 1, 3), 1);
        // Weight 2 of 4: ⌈1.25 × 8 × 2 / 4⌉ = 5.
        assert_eq!(capacity(&C125, 7, 2, 4), 5);
        assert_eq!(capacity(&C125, u64::MAX, 1000, 1), u64::MAX);
        assert_eq!(capacity(&C125, 5, 1, 0), u64::MAX);
    }

    #[test]
    fn division_matches_u128() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let shift = next() % 128;
            let num = (u128::from(next()) << 64 | u128::from(next())) >> shift;
            let den = (u128::from(next()) << 64 | u128::from(next())) >> (54 + next() % 74);
            let den = den.max(1);
            let want = u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX);
            assert_eq!(div_ceil_saturating(num, den), want, "{num} / {den}");
        }
        assert_eq!(div_ceil_saturating(0, 7), 0);
        assert_eq!(div_ceil_saturating(u128::from(u64::MAX), 1), u64::MAX);
        assert_eq!(div_ceil_saturating(u128::from(u64::MAX) * 3, 3), u64::MAX);
        assert_eq!(div_ceil_saturating(u128::from(u64::MAX) * 3 - 1, 3), u64::MAX);
        assert_eq!(div_ceil_saturating(u128::from(u64::MAX - 1) * 3 + 1, 3), u64::MAX);
        assert_eq!(div_ceil_saturating(u128::from(u64::MAX - 1) * 3, 3), u64::MAX - 1);
    }

    #[test]
    fn spills_in_preference_order_past_full_hosts() {
        let loads: [u64; 4] = [5, 5, 0, 0];
        // total 10 over 4 hosts: ⌈1.25 × 11 / 4⌉ = 4; hosts 0 and 1 are full.
        let p = place(&C125, [1, 0, 3, 2].into_iter(), &loads[..], 10, 4, |_| 1).unwrap();
        assert_eq!(p, Placed { host: 3, spilled_from: Some(1), capacity: 4 });
        let p = place(&C125, [2, 0].into_iter(), &loads[..], 10, 4, |_| 1).unwrap();
        assert_eq!(p, Placed { host: 2, spilled_from: None, capacity: 4 });
    }

    #[test]
    fn everyone_full_keeps_the_first_choice_and_no_candidates_is_none() {
        let loads: [u64; 2] = [100, 100];
        let p = place(&C125, [1, 0].into_iter(), &loads[..], 0, 2, |_| 1).unwrap();
        assert_eq!((p.host, p.spilled_from), (1, None));
        assert_eq!(place(&C125, std::iter::empty(), &loads[..], 0, 2, |_| 1), None);
    }
}
