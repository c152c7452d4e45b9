//! The consistent-hash ring: murmur3 points on a 64-bit circle, virtual nodes in proportion to
//! weight, built once per configuration and immutable afterwards.
//!
//! Host `i` owns the points `hash64(id_i ‖ 0x00 ‖ r as u32 LE)` for `r` in `0..weight_i × vnodes`,
//! so a host keeps every point it had when its weight grows, and a host's points depend only on
//! its own id: adding a host moves only the keys that fall on its new points, removing one moves
//! only the keys that were on its points.
//!
//! Each point is packed into one `u64`: the top 48 bits of the point hash, then the 16-bit host
//! index. Sorting packed values sorts by position (ties broken by index, which the caller makes
//! canonical by sorting hosts by id), and the ring costs 8 bytes a point.

use crate::murmur3::hash64;

/// Host indices live in the low 16 bits of a packed point.
pub const MAX_HOSTS: usize = 1 << 16;
const INDEX_BITS: u32 = 16;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    points: Vec<u64>,
    hosts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    NoHosts,
    TooManyHosts(usize),
    NoPoints(usize),
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::NoHosts => write!(f, "the ring needs at least one host"),
            RingError::TooManyHosts(n) => write!(f, "{n} hosts, at most {MAX_HOSTS} fit the ring"),
            RingError::NoPoints(i) => write!(f, "host {i} has no points on the ring"),
        }
    }
}

/// The byte string hashed for a host's `replica`-th point.
fn point_hash(id: &[u8], replica: u32, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    buf.extend_from_slice(id);
    buf.push(0);
    buf.extend_from_slice(&replica.to_le_bytes());
    hash64(buf)
}

impl Ring {
    /// A ring with no points, a placeholder until hosts are set.
    pub(crate) fn empty() -> Ring {
        Ring { points: Vec::new(), hosts: 0 }
    }

    /// Builds the ring from `(id, points)` per host; a host's index is its position in `hosts`.
    pub fn build<'a>(hosts: impl ExactSizeIterator<Item = (&'a [u8], u32)>) -> Result<Ring, RingError> {
        let count = hosts.len();
        if count == 0 {
            return Err(RingError::NoHosts);
        }
        if count > MAX_HOSTS {
            return Err(RingError::TooManyHosts(count));
        }
        let mut points = Vec::new();
        let mut buf = Vec::with_capacity(64);
        for (index, (id, replicas)) in hosts.enumerate() {
            if replicas == 0 {
                return Err(RingError::NoPoints(index));
            }
            points.reserve(replicas as usize);
            for replica in 0..replicas {
                let position = point_hash(id, replica, &mut buf) & !INDEX_MASK;
                points.push(position | index as u64);
            }
        }
        crate::order::sort_u64(&mut points);
        Ok(Ring { points, hosts: count })
    }

    pub fn host_count(&self) -> usize {
        self.hosts
    }

    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// Heap bytes the ring holds.
    pub fn memory_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<u64>()
    }

    /// Index into `points` of the first point at or clockwise after `hash`.
    #[inline]
    fn first_point(&self, hash: u64) -> usize {
        let key = hash & !INDEX_MASK;
        let at = self.points.partition_point(|&p| p < key);
        if at == self.points.len() { 0 } else { at }
    }

    #[inline]
    fn host_at(&self, point: usize) -> usize {
        self.points.get(point).map_or(0, |&p| (p & INDEX_MASK) as usize)
    }

    /// The host owning `hash`: the first point clockwise. Does not allocate.
    #[inline]
    pub fn owner(&self, hash: u64) -> usize {
        self.host_at(self.first_point(hash))
    }

    /// The first host clockwise from `hash` that `eligible` accepts (at most one lap).
    pub fn first_eligible(&self, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.walk(hash).find(|&h| eligible(h))
    }

    /// Distinct hosts in clockwise order from `hash`: the owner, then its successors.
    pub fn walk(&self, hash: u64) -> Walk<'_> {
        Walk {
            ring: self,
            next: self.first_point(hash),
            remaining: self.points.len(),
            seen: Vec::new(),
            yielded: 0,
        }
    }
}

/// Iterator over distinct hosts clockwise; stops after one lap or once every host was yielded.
pub struct Walk<'a> {
    ring: &'a Ring,
    next: usize,
    remaining: usize,
    /// Bitset of hosts already yielded, allocated on the first step past the owner.
    seen: Vec<u64>,
    yielded: usize,
}

impl Walk<'_> {
    fn mark(&mut self, host: usize) -> bool {
        if self.seen.is_empty() {
            self.seen = vec![0; self.ring.hosts.div_ceil(64)];
        }
        let (word, bit) = (host / 64, 1u64 << (host % 64));
        match self.seen.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.remaining > 0 && self.yielded < self.ring.hosts {
            let host = self.ring.host_at(self.next);
            self.remaining -= 1;
            self.next += 1;
            if self.next == self.ring.points.len() {
                self.next = 0;
            }
            if self.mark(host) {
                self.yielded += 1;
                return Some(host);
            }
        }
        None
    }
}
