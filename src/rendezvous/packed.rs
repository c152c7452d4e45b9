//! The slot table's storage: one owner per slot, bit-packed.

/// Slot owners packed at `bits` bits each (just enough for the host count): 1.25 MiB at
/// 1,000 hosts, 512 KiB at 10.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Packed {
    bits: u32,
    /// One spare word at the end, so that a read may always touch two words.
    words: Vec<u64>,
}

impl Packed {
    /// `len` zeros, packed at just enough bits for values below `values` (filled by [`Packed::set`]).
    pub(super) fn zeroed(len: usize, values: usize) -> Packed {
        let bits = (usize::BITS - values.saturating_sub(1).leading_zeros()).max(1);
        Packed { bits, words: vec![0u64; (len * bits as usize).div_ceil(64) + 1] }
    }

    /// How many distinct values fit (`2^bits`).
    pub(super) fn capacity(&self) -> usize {
        1 << self.bits
    }

    /// Stores `value` (cut to `bits` bits) at `slot`.
    #[inline]
    pub(super) fn set(&mut self, slot: usize, value: u16) {
        let bits = self.bits;
        let at = slot * bits as usize;
        let (word, offset) = (at / 64, (at % 64) as u32);
        let mask = (1u64 << bits) - 1;
        let value = u64::from(value) & mask;
        if let Some(w) = self.words.get_mut(word) {
            *w = (*w & !(mask << offset)) | (value << offset);
        }
        if offset + bits > 64
            && let Some(w) = self.words.get_mut(word + 1)
        {
            let spill = 64 - offset;
            *w = (*w & !(mask >> spill)) | (value >> spill);
        }
    }

    #[inline]
    pub(super) fn get(&self, slot: usize) -> u16 {
        let at = slot * self.bits as usize;
        let (word, offset) = (at / 64, (at % 64) as u32);
        let lo = self.words.get(word).copied().unwrap_or(0) >> offset;
        let hi =
            if offset == 0 { 0 } else { self.words.get(word + 1).copied().unwrap_or(0) << (64 - offset) };
        ((lo | hi) & ((1u64 << self.bits) - 1)) as u16
    }

    /// No table (not built yet).
    pub(super) fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Heap bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}
