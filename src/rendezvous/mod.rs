//! Weighted rendezvous (highest-random-weight) placement, served from a table of its winners.
//!
//! The 64-bit circle is cut into [`SLOTS`] = 2^20 equal slots (a key's slot is the top 20 bits
//! of its point). Every host ranks every slot: host `h` with weight `w` has `w` replicas, replica
//! `j` holds a keyed pseudo-random permutation `P_hj` of the slots (three rounds of xor with a key,
//! multiplication by an odd key and xor-shift, modulo 2^20; keys from
//! `murmur3_x64_128(id ‖ 0x00 ‖ j as u32 LE)` with seed [`KEY_SEED`]), and `h`'s score at slot
//! `s` is `min_j P_hj(s)`, lower is better. A slot belongs to the host with the lowest score,
//! ties going to the lower host index (hosts are sorted by id, so that order does not depend on
//! which other hosts exist). The second-lowest is where the slot goes if its owner leaves, and
//! so on: that ranking is the failover and fallback order.
//!
//! Because a slot's ranking is a fixed order over host ids, the placement depends only on the set
//! of `(id, weight)`: adding a host moves only slots it now wins, removing one moves only its own
//! slots, and no slot ever moves between two hosts that stay. A host's expected share is its
//! weight over the total weight (each replica is equally likely to hold the minimum).
//!
//! Everything is integer arithmetic, so native builds and the `.wasm` agree bit for bit.
//!
//! The table holds each slot's owner bit-packed (10 bits at 1,000 hosts: 1.25 MiB). Building it naively would score every
//! slot for every host; instead every replica enumerates its own permutation in rank order
//! (rank 0 first), round by round, and the first replica to reach a slot owns it (a round visits
//! replicas in host-index order, so ties resolve as defined). After about `ln(replicas)` rounds
//! per replica-share of slots, the few slots nobody reached yet are scored directly. A membership
//! change starts from a copy of the previous table and rewrites only the slots that change owner:
//! the table holds handles, not indices, and a host keeps its handle while others come and go
//! (its index, a position in id order, may shift). A removed host's slots are found among its
//! own ranks up to the highest winning rank in the table (a host owns no slot it ranks worse) and
//! scored directly; added hosts enumerate their ranks up to that bound and take the slots they
//! win. Both paths give exactly the table a full scoring would give (tests compare them, also
//! along chains of changes).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::murmur3::murmur3_x64_128;

mod packed;

use packed::Packed;

/// log2 of the slot count.
pub const SLOT_BITS: u32 = 20;
pub const SLOTS: usize = 1 << SLOT_BITS;
const HALF_BITS: u32 = SLOT_BITS / 2;
const ROUNDS: usize = 3;
/// Seed of the murmur3 hash that keys a replica's permutation ("REND").
pub const KEY_SEED: u32 = 0x5245_4e44;
/// Marks a slot not yet assigned while building; never a host index (at most 10,000 hosts).
const EMPTY: u16 = u16::MAX;
/// Largest host count: indices are `u16` and [`EMPTY`] is reserved.
pub const MAX_HOSTS: usize = u16::MAX as usize;
/// Largest total weight (replicas): bounds build time, failover cost and key memory (32 bytes each).
pub const MAX_REPLICAS: u64 = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RendezvousError {
    NoHosts,
    TooManyHosts(usize),
    NoWeight(usize),
    TooMuchWeight(u64),
}

impl std::fmt::Display for RendezvousError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RendezvousError::NoHosts => write!(f, "the placement needs at least one host"),
            RendezvousError::TooManyHosts(n) => {
                write!(f, "{n} hosts, at most {MAX_HOSTS} fit the rendezvous table")
            }
            RendezvousError::NoWeight(i) => write!(f, "host {i} has weight 0"),
            RendezvousError::TooMuchWeight(w) => {
                write!(f, "total weight {w} is more than {MAX_REPLICAS} for the rendezvous placement")
            }
        }
    }
}

/// One replica's permutation of the slots: three rounds of (xor a key, multiply by an odd
/// constant modulo 2^20, xor-shift the high half into the low half), every step a bijection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replica {
    /// xor keys, multipliers (odd) and their inverses modulo 2^20.
    xors: [u32; ROUNDS],
    muls: [u32; ROUNDS],
    invs: [u32; ROUNDS],
}

const MASK: u32 = (1 << SLOT_BITS) - 1;

/// The inverse of odd `m` modulo 2^32 (Newton's iteration doubles the correct bits each step).
fn inverse(m: u32) -> u32 {
    let mut y = m;
    for _ in 0..5 {
        y = y.wrapping_mul(2u32.wrapping_sub(m.wrapping_mul(y)));
    }
    y
}

impl Replica {
    fn new(id: &[u8], replica: u32, buf: &mut Vec<u8>) -> Replica {
        buf.clear();
        buf.extend_from_slice(id);
        buf.push(0);
        buf.extend_from_slice(&replica.to_le_bytes());
        let (h1, h2) = murmur3_x64_128(buf, KEY_SEED);
        let mut state = h1 ^ h2.rotate_left(32);
        let mut next = move || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut xors = [0u32; ROUNDS];
        let mut muls = [0u32; ROUNDS];
        let mut invs = [0u32; ROUNDS];
        for i in 0..ROUNDS {
            let z = next();
            xors[i] = (z as u32) & MASK;
            muls[i] = ((z >> 32) as u32 & MASK) | 1;
            invs[i] = inverse(muls[i]) & MASK;
        }
        Replica { xors, muls, invs }
    }

    /// The replica's rank of `slot` (lower is better).
    #[inline]
    fn rank(&self, slot: u32) -> u32 {
        let mut x = slot;
        for i in 0..ROUNDS {
            x ^= self.xors[i];
            x = x.wrapping_mul(self.muls[i]) & MASK;
            x ^= x >> HALF_BITS;
        }
        x
    }

    /// The slot this replica ranks `rank`-th (the inverse of [`Replica::rank`]).
    #[inline]
    fn slot_at(&self, rank: u32) -> u32 {
        let mut x = rank & MASK;
        for i in (0..ROUNDS).rev() {
            x ^= x >> HALF_BITS;
            x = x.wrapping_mul(self.invs[i]) & MASK;
            x ^= self.xors[i];
        }
        x
    }
}

#[derive(Clone)]
pub struct Rendezvous {
    /// Owner of each slot as a handle, bit-packed: `handles[handle]` is the host's index. A
    /// membership change rewrites only the slots that change owner, as handles of hosts that
    /// stay do not change when other hosts come or go (their sorted index may).
    table: Packed,
    /// Host index per handle; [`EMPTY`] for a handle no host holds.
    handles: Vec<u16>,
    /// Every host's replicas, grouped by host in index order.
    replicas: Vec<Replica>,
    /// Host `i`'s replicas are `replicas[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    /// `(id hash, weight)` per host, to tell which hosts a new membership keeps.
    identity: Vec<(u64, u64, u32)>,
    /// At least the highest winning score in `table`: an added host can win only below it.
    bound: u32,
    /// This table's tag in the per-VM cache of recently walked slots' second and third hosts
    /// (see [`Fallbacks`]).
    fallbacks: Fallbacks,
}

/// Entries of the per-VM fallback cache (see [`Fallbacks`]): a power of two. 2^16 entries of 8
/// bytes (512 KiB) keep the placement state at 1,000 hosts under 2 MiB (1,345 KiB of table and
/// keys plus the cache), and hold ~94% of 4,096 sessions cycling (two slots share an entry only
/// if their low 16 bits do): 2^14 entries held 78%, 4,096 entries 37%.
pub const FALLBACK_ENTRIES: usize = 1 << 16;
/// Bytes of the per-VM fallback cache once allocated (on the first walk of any table).
pub const FALLBACK_CACHE_BYTES: usize = FALLBACK_ENTRIES * 8;
/// Bits of an entry's table tag: at most `2^TAG_BITS - 1` live tables use the cache at once (tag
/// 0 is never given, so an all-zero entry is empty); a table that finds none free never caches
/// (its walks score every time, with the same result).
const TAG_BITS: u32 = 12;
const TAGS: usize = 1 << TAG_BITS;

/// The cache itself: `tag << 52 | slot << 32 | second << 16 | third`, `u16::MAX` for no such
/// host; 0 = empty. Relaxed atomics: each entry is written and read whole, so `Config` stays
/// `Sync` (natively; a wasm VM has one thread).
static CACHE: std::sync::OnceLock<Box<[AtomicU64]>> = std::sync::OnceLock::new();
/// Which tags a live table holds, one bit each (512 bytes).
static LIVE: [AtomicU64; TAGS / 64] = [const { AtomicU64::new(0) }; TAGS / 64];
/// Where the search for a free tag starts (round robin, so a freed tag waits before reuse).
static NEXT_TAG: AtomicU32 = AtomicU32::new(1);

/// The next two hosts of slots walked recently, so a session's later requests do not score every
/// host again (what `target.fallbacks` and a failover read; O(total weight) to compute, 3.4 µs at
/// 1,000 hosts).
///
/// One cache per VM (process), not per table: during a config reload two configs are alive, and
/// per-table caches of a useful size doubled then (the reload soak allows a VM's linear memory
/// to grow 1 MiB). Direct-mapped, [`FALLBACK_ENTRIES`] entries, allocated on the first walk and
/// kept. Each table takes a tag on its first walk that no other live table holds, and an entry
/// answers only a lookup with its tag and its slot, so a table never reads another's entries (a
/// rebuilt table, or a clone, takes a tag of its own and starts empty). Dropping a table clears
/// its entries before freeing the tag, so a later holder of the tag finds none of them: the
/// clearing happens-before the next take (release/acquire on the tag bit), on any thread. So
/// there is no aliasing between tables, on any number of threads. A drop costs one pass over the
/// cache (≈0.1 ms natively; only for a table that was walked).
#[derive(Default)]
struct Fallbacks {
    /// This table's tag, taken on the first store; 0 if all were taken (never caches).
    tag: std::sync::OnceLock<u16>,
}

impl Clone for Fallbacks {
    /// A copy starts empty with a tag of its own: entries are an optimisation, never state.
    fn clone(&self) -> Fallbacks {
        Fallbacks::default()
    }
}

impl Drop for Fallbacks {
    fn drop(&mut self) {
        let Some(&tag) = self.tag.get() else { return };
        if tag == 0 {
            return;
        }
        if let Some(cache) = CACHE.get() {
            for e in cache.iter() {
                let v = e.load(Relaxed);
                if v >> 52 == u64::from(tag) {
                    // Another table may have taken the entry since: leave it then.
                    let _ = e.compare_exchange(v, 0, Relaxed, Relaxed);
                }
            }
        }
        let t = usize::from(tag);
        if let Some(word) = LIVE.get(t / 64) {
            word.fetch_and(!(1u64 << (t % 64)), Release);
        }
    }
}

/// A tag no live table holds, or 0 when every one is taken (or, with other threads taking and
/// freeing tags at once, none was found free in one round).
fn take_tag() -> u16 {
    for _ in 0..TAGS {
        let t = NEXT_TAG.fetch_add(1, Relaxed) as usize % TAGS;
        let bit = 1u64 << (t % 64);
        if t != 0
            && let Some(word) = LIVE.get(t / 64)
            && word.fetch_or(bit, Acquire) & bit == 0
        {
            return t as u16;
        }
    }
    0
}

/// The cache entry of `slot` for the table tagged `tag`: tables place a slot at different
/// entries (the tag's 12 bits xor bits 4–15 of the slot), so two live tables walking the same
/// keys (the old and new config during a reload, two filters in one VM) do not evict each other.
#[inline]
fn entry_index(tag: u16, slot: u32) -> usize {
    (slot ^ u32::from(tag) << 4) as usize % FALLBACK_ENTRIES
}

impl Fallbacks {
    /// The remembered next two hosts of `slot`, checked to name hosts below `hosts`.
    #[inline]
    fn get(&self, slot: u32, hosts: usize) -> Option<[u16; 2]> {
        let tag = *self.tag.get().filter(|&&t| t != 0)?;
        let e = CACHE.get()?.get(entry_index(tag, slot))?.load(Relaxed);
        // Tag and slot both: the index alone already tells tags apart for a given slot, but
        // correctness should not rest on how entries are spread.
        if e >> 32 != u64::from(tag) << 20 | u64::from(slot) {
            return None;
        }
        let next = [(e >> 16) as u16, e as u16];
        let valid = |h: u16| h == u16::MAX || usize::from(h) < hosts;
        (valid(next[0]) && valid(next[1])).then_some(next)
    }

    fn put(&self, slot: u32, next: [u16; 2]) {
        let tag = *self.tag.get_or_init(take_tag);
        if tag == 0 {
            return;
        }
        let cache = CACHE.get_or_init(|| (0..FALLBACK_ENTRIES).map(|_| AtomicU64::new(0)).collect());
        if let Some(e) = cache.get(entry_index(tag, slot)) {
            let key = u64::from(tag) << 20 | u64::from(slot & MASK);
            e.store(key << 32 | u64::from(next[0]) << 16 | u64::from(next[1]), Relaxed);
        }
    }
}

/// Equal placements: the same hosts and the same owner in every slot (`bound` and the handles
/// depend on the build path).
impl PartialEq for Rendezvous {
    fn eq(&self, other: &Rendezvous) -> bool {
        self.identity == other.identity
            && self.table.is_empty() == other.table.is_empty()
            && (self.table.is_empty() || (0..SLOTS).all(|s| self.owner_at(s) == other.owner_at(s)))
    }
}

impl Eq for Rendezvous {}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous")
            .field("hosts", &self.host_count())
            .field("replicas", &self.replicas.len())
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

/// How a table was produced, for benchmarks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPath {
    Full,
    Incremental,
}

impl Rendezvous {
    fn prepare<'a>(
        hosts: impl ExactSizeIterator<Item = (&'a [u8], u32)>,
    ) -> Result<Rendezvous, RendezvousError> {
        let count = hosts.len();
        if count == 0 {
            return Err(RendezvousError::NoHosts);
        }
        if count > MAX_HOSTS {
            return Err(RendezvousError::TooManyHosts(count));
        }
        let mut replicas = Vec::new();
        let mut starts = Vec::with_capacity(count + 1);
        let mut identity = Vec::with_capacity(count);
        let mut buf = Vec::with_capacity(64);
        let mut total = 0u64;
        for (index, (id, weight)) in hosts.enumerate() {
            if weight == 0 {
                return Err(RendezvousError::NoWeight(index));
            }
            total += u64::from(weight);
            if total > MAX_REPLICAS {
                return Err(RendezvousError::TooMuchWeight(total));
            }
            starts.push(replicas.len() as u32);
            for j in 0..weight {
                replicas.push(Replica::new(id, j, &mut buf));
            }
            let (h1, h2) = murmur3_x64_128(id, 0);
            identity.push((h1, h2, weight));
        }
        starts.push(replicas.len() as u32);
        Ok(Rendezvous {
            table: Packed::default(),
            handles: Vec::new(),
            replicas,
            starts,
            identity,
            bound: 0,
            fallbacks: Fallbacks::default(),
        })
    }

    /// Builds the table from `(id, weight)` per host; a host's index is its position in `hosts`.
    pub fn build<'a>(
        hosts: impl ExactSizeIterator<Item = (&'a [u8], u32)>,
    ) -> Result<Rendezvous, RendezvousError> {
        let mut r = Self::prepare(hosts)?;
        r.fill_full();
        Ok(r)
    }

    /// The table for `hosts`, computed from `self` (the previous membership) where that is
    /// cheaper than a full build. The result is identical to [`Rendezvous::build`].
    pub fn rebuild<'a>(
        &self,
        hosts: impl ExactSizeIterator<Item = (&'a [u8], u32)>,
    ) -> Result<(Rendezvous, BuildPath), RendezvousError> {
        let mut next = Self::prepare(hosts)?;
        if self.table.is_empty() {
            next.fill_full();
            return Ok((next, BuildPath::Full));
        }
        // Old index → new index for hosts kept with the same id and weight (both lists sorted
        // by id, identities compared by a 128-bit id hash and the weight).
        let mut remap = vec![EMPTY; self.identity.len()];
        let mut kept = vec![false; next.identity.len()];
        {
            let mut by_identity = Vec::with_capacity(next.identity.len());
            for (i, &(a, b, w)) in next.identity.iter().enumerate() {
                by_identity.push((a, b, w, i));
            }
            crate::order::sort_by(&mut by_identity, &Ord::cmp);
            for (old, &(a, b, w)) in self.identity.iter().enumerate() {
                let at = by_identity.partition_point(|&(x, y, v, _)| (x, y, v) < (a, b, w));
                if let Some(&(x, y, v, new)) = by_identity.get(at)
                    && (x, y, v) == (a, b, w)
                    && let Some(slot) = remap.get_mut(old)
                {
                    *slot = new as u16;
                    if let Some(k) = kept.get_mut(new) {
                        *k = true;
                    }
                }
            }
        }
        // Loops rather than iterator chains, which each link their own adapters into the module.
        let (mut removed, mut removed_weight) = (Vec::new(), 0u64);
        for (i, &to) in remap.iter().enumerate() {
            if to == EMPTY {
                removed.push(i);
                removed_weight += u64::from(self.weight(i));
            }
        }
        let (mut added, mut added_weight) = (Vec::new(), 0u64);
        for (i, &k) in kept.iter().enumerate() {
            if !k {
                added.push(i);
                added_weight += u64::from(next.weight(i));
            }
        }
        let new_replicas = next.replicas.len() as u64;
        // Work estimates in replica-rank evaluations: finding the removed hosts' slots (their
        // ranks up to the bound, or one pass over the table) and scoring every replica there;
        // the added hosts' ranks up to the bound, each scoring the slot's owner.
        let bound = u64::from(self.bound) + 1;
        let removed_slots = SLOTS as u64 * removed.len() as u64 / self.identity.len().max(1) as u64;
        let incremental = (removed_weight * bound).min(SLOTS as u64)
            + removed_slots * new_replicas
            + added_weight * bound * (1 + new_replicas / self.identity.len().max(1) as u64);
        let full = SLOTS as u64 * (ln_approx(new_replicas) + 2);
        // Handles: kept hosts keep theirs; added hosts take ones no host held before (a removed
        // host's handle still marks its slots until they are rescored).
        let mut handles = Vec::with_capacity(self.handles.len());
        for &i in &self.handles {
            handles.push(if i == EMPTY {
                EMPTY
            } else {
                remap.get(usize::from(i)).copied().unwrap_or(EMPTY)
            });
        }
        let mut free = (0..self.handles.len()).filter(|&h| self.handles.get(h) == Some(&EMPTY));
        let mut handle_of_added = Vec::with_capacity(added.len());
        for &host in &added {
            let h = free.next().unwrap_or_else(|| {
                handles.push(EMPTY);
                handles.len() - 1
            });
            if let Some(slot) = handles.get_mut(h) {
                *slot = host as u16;
            }
            handle_of_added.push(h as u16);
        }
        if incremental >= full || handles.len() > self.table.capacity() {
            next.fill_full();
            return Ok((next, BuildPath::Full));
        }
        let mut handle_of = vec![EMPTY; next.host_count()];
        for (h, &i) in handles.iter().enumerate() {
            if let Some(slot) = handle_of.get_mut(usize::from(i)) {
                *slot = h as u16;
            }
        }
        next.handles = handles;
        next.table = self.table.clone();
        next.bound = self.bound;
        // The removed hosts' slots, each scored over every replica of the new membership.
        // Per handle: held by a removed host (its slots still carry it; `next.handles` maps it
        // to nothing already).
        let mut removed_handle = Vec::with_capacity(self.handles.len());
        for &i in &self.handles {
            removed_handle.push(i != EMPTY && remap.get(usize::from(i)) == Some(&EMPTY));
        }
        let rescore = |next: &mut Rendezvous, slot: u32| {
            let (score, host) = next.best(slot);
            next.bound = next.bound.max(score);
            let h = handle_of.get(usize::from(host)).copied().unwrap_or(0);
            next.table.set(slot as usize, h);
        };
        if removed_weight * bound < SLOTS as u64 {
            // A host owns only slots it ranks within the bound.
            for &old in &removed {
                let Some(handle) = self.handle_of_index(old) else { continue };
                for rep in self.replica_range(old) {
                    let Some(&replica) = self.replicas.get(rep) else { continue };
                    for rank in 0..=self.bound.min(SLOTS as u32 - 1) {
                        let slot = replica.slot_at(rank);
                        if next.table.get(slot as usize) == handle {
                            rescore(&mut next, slot);
                        }
                    }
                }
            }
        } else if removed_handle.contains(&true) {
            for slot in 0..SLOTS as u32 {
                if removed_handle.get(usize::from(next.table.get(slot as usize))) == Some(&true) {
                    rescore(&mut next, slot);
                }
            }
        }
        // In chunks: each step's slot, owner and owner's score are computed for a run of ranks
        // first (independent work the CPU overlaps), then compared. A replica's ranks are
        // distinct slots, so no step of a chunk sees another's write.
        const CHUNK: usize = 256;
        let uniform = next.replicas.len() == next.identity.len();
        let mut slots = [0u32; CHUNK];
        let mut owners = [0usize; CHUNK];
        let mut scores = [0u32; CHUNK];
        let last = next.bound.min(SLOTS as u32 - 1);
        for (&host, &handle) in added.iter().zip(&handle_of_added) {
            for rep in next.replica_range(host) {
                let Some(&replica) = next.replicas.get(rep) else { continue };
                let mut start = 0u32;
                while start <= last {
                    let n = ((last - start) as usize + 1).min(CHUNK);
                    for (i, slot) in slots.iter_mut().take(n).enumerate() {
                        *slot = replica.slot_at(start + i as u32);
                    }
                    for (owner, &slot) in owners.iter_mut().zip(&slots).take(n) {
                        *owner = next.owner_at(slot as usize);
                    }
                    for ((score, &owner), &slot) in scores.iter_mut().zip(&owners).zip(&slots).take(n) {
                        *score = if uniform {
                            next.replicas.get(owner).map_or(u32::MAX, |r| r.rank(slot))
                        } else {
                            next.score(owner, slot)
                        };
                    }
                    for i in 0..n {
                        let (Some(&slot), Some(&owner), Some(&score)) =
                            (slots.get(i), owners.get(i), scores.get(i))
                        else {
                            continue;
                        };
                        if (start + i as u32, host) < (score, owner) {
                            next.table.set(slot as usize, handle);
                        }
                    }
                    start += n as u32;
                }
            }
        }
        Ok((next, BuildPath::Incremental))
    }

    /// The handle of the host at `index` in this placement.
    fn handle_of_index(&self, index: usize) -> Option<u16> {
        let h = self.handles.iter().position(|&i| usize::from(i) == index)?;
        Some(h as u16)
    }

    /// The index of the host owning `slot`.
    #[inline]
    fn owner_at(&self, slot: usize) -> usize {
        let handle = self.table.get(slot);
        usize::from(self.handles.get(usize::from(handle)).copied().unwrap_or(0))
    }

    fn weight(&self, host: usize) -> u32 {
        self.identity.get(host).map_or(0, |&(_, _, w)| w)
    }

    fn replica_range(&self, host: usize) -> std::ops::Range<usize> {
        let start = self.starts.get(host).copied().unwrap_or(0) as usize;
        let end = self.starts.get(host + 1).copied().unwrap_or(0) as usize;
        start..end.max(start)
    }

    /// Host `host`'s score at `slot`: its best replica rank.
    #[inline]
    fn score(&self, host: usize, slot: u32) -> u32 {
        let range = self.replica_range(host);
        self.replicas
            .get(range)
            .map_or(u32::MAX, |reps| reps.iter().map(|r| r.rank(slot)).min().unwrap_or(u32::MAX))
    }

    /// Every host's `(score << 16) | host` at `slot`, in host order (keys are distinct, and
    /// ordering them orders hosts by score, ties to the lower index).
    fn keys_into(&self, slot: u32, out: &mut Vec<u64>) {
        out.clear();
        if self.replicas.len() == self.identity.len() {
            // Every weight is 1: one replica per host, scored independently (the CPU overlaps them).
            out.extend(
                self.replicas.iter().enumerate().map(|(h, r)| (u64::from(r.rank(slot)) << 16) | h as u64),
            );
        } else {
            out.extend((0..self.host_count()).map(|h| (u64::from(self.score(h, slot)) << 16) | h as u64));
        }
    }

    /// The lowest `(score, host)` at `slot`, scoring every replica.
    fn best(&self, slot: u32) -> (u32, u16) {
        let best = if self.replicas.len() == self.identity.len() {
            self.replicas.iter().enumerate().map(|(h, r)| (u64::from(r.rank(slot)) << 16) | h as u64).min()
        } else {
            (0..self.host_count()).map(|h| (u64::from(self.score(h, slot)) << 16) | h as u64).min()
        };
        best.map_or((u32::MAX, 0), |k| ((k >> 16) as u32, (k & 0xffff) as u16))
    }

    fn fill_full(&mut self) {
        // Owners go straight into the packed table, so a build's peak is the table and a 128 KiB
        // bitset. An unpacked `u16` per slot (2 MiB, freed after the build) left a hole in a wasm
        // VM's heap that the next reload's build needed whole: once the fallback cache sat in
        // part of it, the reload soak's linear memory (which never shrinks) grew 1.4 MiB per VM.
        let mut table = Packed::zeroed(SLOTS, self.host_count());
        let n = self.replicas.len() as u64;
        // ~ln(n) slot-shares per replica leave ~1/n of the slots for direct scoring, which
        // balances the two costs; the result does not depend on this choice.
        let rounds = (SLOTS as u64 * ln_approx(n) / n.max(1)).clamp(1, SLOTS as u64) as u32;
        let mut hosts_of = Vec::with_capacity(self.replicas.len());
        for host in 0..self.host_count() {
            for _ in self.replica_range(host) {
                hosts_of.push(host as u16);
            }
        }
        // Which slots are taken, as a bitset (128 KiB, cache-resident where the table is not).
        let mut taken = vec![0u64; SLOTS / 64];
        let mut filled = 0usize;
        for rank in 0..rounds {
            for (replica, &host) in self.replicas.iter().zip(&hosts_of) {
                let slot = replica.slot_at(rank) as usize;
                let bit = 1u64 << (slot % 64);
                if let Some(word) = taken.get_mut(slot / 64)
                    && *word & bit == 0
                {
                    *word |= bit;
                    table.set(slot, host);
                    filled += 1;
                }
            }
            if filled == SLOTS {
                break;
            }
        }
        let mut bound = rounds.saturating_sub(1);
        for (word, &bits) in taken.iter().enumerate() {
            let mut free = !bits;
            while free != 0 {
                let slot = word as u32 * 64 + free.trailing_zeros();
                free &= free - 1;
                let (score, host) = self.best(slot);
                bound = bound.max(score);
                table.set(slot as usize, host);
            }
        }
        self.bound = bound;
        self.table = table;
        // Freshly built: every host's handle is its index.
        self.handles = (0..self.host_count()).map(|h| h as u16).collect();
    }

    pub fn host_count(&self) -> usize {
        self.identity.len()
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Heap bytes the placement holds (table, replica keys, per-host bookkeeping), without the
    /// per-VM fallback cache that every table shares ([`Rendezvous::fallback_cache_bytes`]): a VM's
    /// placement state is the sum over its live tables plus that cache, once.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
            + self.handles.capacity() * 2
            + self.replicas.capacity() * std::mem::size_of::<Replica>()
            + self.starts.capacity() * 4
            + self.identity.capacity() * std::mem::size_of::<(u64, u64, u32)>()
    }

    /// Heap bytes of the per-VM fallback cache (see [`Fallbacks`]): [`FALLBACK_CACHE_BYTES`] once
    /// any table was walked, else 0 (its tag bitset is a 512-byte static).
    pub fn fallback_cache_bytes() -> usize {
        CACHE.get().map_or(0, |c| c.len() * 8)
    }

    /// This table's tag in the fallback cache (`None` before its first walk; 0: none was free).
    /// For tests.
    #[doc(hidden)]
    pub fn fallback_tag(&self) -> Option<u16> {
        self.fallbacks.tag.get().copied()
    }

    /// Makes `tag` the first one the next table taking a tag tries (it still skips tags live
    /// tables hold). For tests that reuse a freed tag or aim at a held one.
    #[doc(hidden)]
    pub fn set_next_fallback_tag(tag: u16) {
        NEXT_TAG.store(u32::from(tag), Relaxed);
    }

    #[inline]
    pub fn slot(point: u64) -> u32 {
        (point >> (64 - SLOT_BITS)) as u32
    }

    /// The host owning `point`: one table read. Does not allocate.
    #[inline]
    pub fn owner(&self, point: u64) -> usize {
        self.owner_at(Self::slot(point) as usize)
    }

    /// The owner of `point` computed by scoring every host, without the table (for tests).
    pub fn owner_by_scoring(&self, point: u64) -> usize {
        usize::from(self.best(Self::slot(point)).1)
    }

    /// Every host in `point`'s ranking, best first, by scoring every host: what [`Rendezvous::walk`]
    /// yields, without the table or the fallback cache (for tests).
    pub fn ranking_by_scoring(&self, point: u64) -> Vec<usize> {
        let mut keys = Vec::new();
        self.keys_into(Self::slot(point), &mut keys);
        keys.sort_unstable();
        keys.into_iter().map(|k| (k & 0xffff) as usize).collect()
    }

    /// Distinct hosts in `point`'s ranking: the owner, then where the key would go if each
    /// host before it left. The owner comes from the table; the next two come from the VM's
    /// memory of recently walked slots (see [`Fallbacks`]), else from scoring every replica
    /// (O(total weight), then remembered); each step past those scans the hosts once.
    pub fn walk(&self, point: u64) -> Walk<'_> {
        Walk {
            placement: self,
            slot: Self::slot(point),
            owner: None,
            next: None,
            taken: 0,
            scores: Vec::new(),
            last: None,
        }
    }
}

/// Integer ceil(ln(n)) for n ≥ 1, good enough for work estimates.
fn ln_approx(n: u64) -> u64 {
    // ln(n) = log2(n) × ln 2 ≈ bits × 0.693
    let bits = 64 - u64::from(n.max(1).leading_zeros());
    (bits * 693).div_ceil(1000).max(1)
}

/// Iterator over a slot's hosts, best first.
pub struct Walk<'a> {
    placement: &'a Rendezvous,
    slot: u32,
    owner: Option<usize>,
    /// The two hosts after the owner (`u16::MAX`: none), from [`Fallbacks`] or scored.
    next: Option<[u16; 2]>,
    /// How many of `next` were yielded.
    taken: usize,
    /// `(score << 16 | host)` per host (indexed by host), filled when the walk needs them.
    scores: Vec<u64>,
    last: Option<u64>,
}

impl Walk<'_> {
    /// Scores every host and returns the one after `last` in the order.
    fn step_scored(&mut self, after: usize) -> Option<usize> {
        let p = self.placement;
        if self.scores.is_empty() {
            p.keys_into(self.slot, &mut self.scores);
            self.last = self.scores.get(after).copied();
        }
        let last = self.last?;
        let next = self.scores.iter().copied().filter(|&k| k > last).min()?;
        self.last = Some(next);
        Some((next & 0xffff) as usize)
    }
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let p = self.placement;
        let Some(owner) = self.owner else {
            if p.table.is_empty() {
                return None;
            }
            let owner = p.owner_at(self.slot as usize);
            self.owner = Some(owner);
            return Some(owner);
        };
        let next = match self.next {
            Some(next) => next,
            None => {
                let next = p.fallbacks.get(self.slot, p.host_count()).unwrap_or_else(|| {
                    let second = self.step_scored(owner);
                    let third = second.and_then(|h| self.step_scored(h));
                    let next = [second, third].map(|h| h.map_or(u16::MAX, |h| h as u16));
                    p.fallbacks.put(self.slot, next);
                    next
                });
                self.next = Some(next);
                next
            }
        };
        if let Some(&host) = next.get(self.taken) {
            self.taken += 1;
            return (host != u16::MAX).then_some(usize::from(host));
        }
        // Past the stored two: continue from the third by scoring every host.
        let third = usize::from(*next.get(1)?);
        if self.scores.is_empty() { self.step_scored(third) } else { self.step_scored(usize::MAX) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_naming_a_host_out_of_range_is_not_believed() {
        // An entry answers only for its table's tag and slot, so it always names hosts of that
        // table; a corrupt one must still never yield an index past the host list.
        let ids = ["a", "b", "c"];
        let r = Rendezvous::build(ids.iter().map(|id| (id.as_bytes(), 1))).unwrap();
        let point = 0x1234_5678_9abc_def0;
        let scored = r.ranking_by_scoring(point);
        assert_eq!(r.walk(point).collect::<Vec<_>>(), scored);
        let (tag, cache) = (r.fallback_tag().unwrap(), CACHE.get().unwrap());
        assert_ne!(tag, 0);
        let slot = Rendezvous::slot(point);
        for bad in [[3, 0], [0, 3], [u16::MAX - 1, 1]] {
            let key = u64::from(tag) << 20 | u64::from(slot);
            cache[entry_index(tag, slot)]
                .store(key << 32 | u64::from(bad[0]) << 16 | u64::from(bad[1]), Relaxed);
            assert_eq!(r.walk(point).collect::<Vec<_>>(), scored, "entry {bad:?}");
        }
    }

    #[test]
    fn permutation_round_trips() {
        let mut buf = Vec::new();
        let r = Replica::new(b"host", 3, &mut buf);
        for s in (0..SLOTS as u32).step_by(997) {
            assert_eq!(r.slot_at(r.rank(s)), s);
            assert_eq!(r.rank(r.slot_at(s)), s);
        }
    }
}
