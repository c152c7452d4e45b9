//! Where a session's point goes: the consistent-hash [`Ring`] or the [`Rendezvous`] table,
//! behind one interface the router uses (`owner`, `walk`, `first_eligible`).

use crate::rendezvous::{self, Rendezvous};
use crate::ring::{self, Ring};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ring,
    Rendezvous,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ring => "ring",
            Algorithm::Rendezvous => "rendezvous",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Ring(Ring),
    Rendezvous(Rendezvous),
}

impl Placement {
    /// A placement with no hosts, a placeholder until hosts are set.
    pub(crate) fn empty() -> Placement {
        Placement::Ring(Ring::empty())
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Placement::Ring(_) => Algorithm::Ring,
            Placement::Rendezvous(_) => Algorithm::Rendezvous,
        }
    }

    /// The host owning `point`. Does not allocate.
    #[inline]
    pub fn owner(&self, point: u64) -> usize {
        match self {
            Placement::Ring(r) => r.owner(point),
            Placement::Rendezvous(r) => r.owner(point),
        }
    }

    /// Distinct hosts in preference order for `point`: the owner first, then where the
    /// session goes if each one before cannot take it.
    pub fn walk(&self, point: u64) -> Walk<'_> {
        match self {
            Placement::Ring(r) => Walk::Ring(r.walk(point)),
            Placement::Rendezvous(r) => Walk::Rendezvous(r.walk(point)),
        }
    }

    /// The first host in `point`'s preference order that `eligible` accepts.
    pub fn first_eligible(&self, point: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let owner = self.owner(point);
        if self.host_count() > 0 && eligible(owner) {
            return Some(owner);
        }
        self.walk(point).skip(1).find(|&h| eligible(h))
    }

    pub fn host_count(&self) -> usize {
        match self {
            Placement::Ring(r) => r.host_count(),
            Placement::Rendezvous(r) => r.host_count(),
        }
    }

    /// Ring points, or rendezvous table slots.
    pub fn point_count(&self) -> usize {
        match self {
            Placement::Ring(r) => r.point_count(),
            Placement::Rendezvous(_) => rendezvous::SLOTS,
        }
    }

    /// Heap bytes the placement holds.
    pub fn memory_bytes(&self) -> usize {
        match self {
            Placement::Ring(r) => r.memory_bytes(),
            Placement::Rendezvous(r) => r.memory_bytes(),
        }
    }

    pub fn as_ring(&self) -> Option<&Ring> {
        match self {
            Placement::Ring(r) => Some(r),
            Placement::Rendezvous(_) => None,
        }
    }

    pub fn as_rendezvous(&self) -> Option<&Rendezvous> {
        match self {
            Placement::Ring(_) => None,
            Placement::Rendezvous(r) => Some(r),
        }
    }
}

pub enum Walk<'a> {
    Ring(ring::Walk<'a>),
    Rendezvous(rendezvous::Walk<'a>),
}

impl Iterator for Walk<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            Walk::Ring(w) => w.next(),
            Walk::Rendezvous(w) => w.next(),
        }
    }
}
