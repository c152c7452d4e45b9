//! SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), as the sticky cookie needs them: its MAC,
//! host tags and keyed session ids.
//!
//! In the crate rather than from `sha2` and `hmac` for the module's size: their SHA-256 is fully
//! unrolled (8 KiB of wasm for one compression function) and their trait layers add as much
//! again. Here sixteen rounds are written once and run four times. Checked against both crates,
//! on random inputs of every length around the block boundaries, and against the FIPS 180-4 and
//! RFC 4231 test vectors (`tests/sha256.rs`).
//!
//! Nothing here branches on, or indexes memory by, the key or the data, so the time taken depends
//! only on the lengths. Comparing a MAC is the caller's, in constant time ([`ct_eq`]).

/// The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The first 32 bits of the fractional parts of the square roots of the first 8 primes.
const H0: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const BLOCK: usize = 64;

/// One round: `d` and `h` take the new values, and the caller renames the eight working
/// variables instead of moving them (every eight rounds the names come back round).
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $k:expr, $w:expr) => {
        let s1 = $e.rotate_right(6) ^ $e.rotate_right(11) ^ $e.rotate_right(25);
        let ch = ($e & $f) ^ (!$e & $g);
        let t1 = $h.wrapping_add(s1).wrapping_add(ch).wrapping_add($k).wrapping_add($w);
        let s0 = $a.rotate_right(2) ^ $a.rotate_right(13) ^ $a.rotate_right(22);
        let maj = ($a & $b) ^ ($a & $c) ^ ($b & $c);
        $d = $d.wrapping_add(t1);
        $h = t1.wrapping_add(s0.wrapping_add(maj));
    };
}

/// W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16], in the 16-word ring: `j` holds W[t-16]
/// and takes W[t]; `j1`, `j9`, `j14` hold W[t-15], W[t-7], W[t-2].
macro_rules! schedule {
    ($w:ident, $j:literal, $j1:literal, $j9:literal, $j14:literal) => {
        let (w15, w2) = ($w[$j1], $w[$j14]);
        let s0 = w15.rotate_right(7) ^ w15.rotate_right(18) ^ (w15 >> 3);
        let s1 = w2.rotate_right(17) ^ w2.rotate_right(19) ^ (w2 >> 10);
        $w[$j] = $w[$j].wrapping_add(s0).wrapping_add($w[$j9]).wrapping_add(s1);
    };
}

/// One compression: `state` absorbs the 64-byte `block`. The rounds run as 4 iterations of 16,
/// written out with constant indices, so the 16-word message schedule stays in locals (the
/// compiler keeps an array indexed only by constants in registers) and the working variables
/// are renamed rather than moved. This is a quarter of the fully unrolled function (8 KiB of
/// wasm) at nearly its speed; one round in a loop of 64 keeps the schedule in memory and moves
/// eight variables per round, and cost 2% more instructions per request with a sticky cookie.
fn compress(state: &mut [u32; 8], block: &[u8; BLOCK]) {
    let word = |i: usize| u32::from_be_bytes([block[i], block[i + 1], block[i + 2], block[i + 3]]);
    #[rustfmt::skip]
    let mut w = [
        word(0), word(4), word(8), word(12), word(16), word(20), word(24), word(28),
        word(32), word(36), word(40), word(44), word(48), word(52), word(56), word(60),
    ];
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for (i, k) in K.chunks_exact(16).enumerate() {
        if i > 0 {
            // The next 16 words of the schedule, each replacing the word 16 before it (written
            // out: a loop would index the array by a variable and keep it in memory).
            schedule!(w, 0, 1, 9, 14);
            schedule!(w, 1, 2, 10, 15);
            schedule!(w, 2, 3, 11, 0);
            schedule!(w, 3, 4, 12, 1);
            schedule!(w, 4, 5, 13, 2);
            schedule!(w, 5, 6, 14, 3);
            schedule!(w, 6, 7, 15, 4);
            schedule!(w, 7, 8, 0, 5);
            schedule!(w, 8, 9, 1, 6);
            schedule!(w, 9, 10, 2, 7);
            schedule!(w, 10, 11, 3, 8);
            schedule!(w, 11, 12, 4, 9);
            schedule!(w, 12, 13, 5, 10);
            schedule!(w, 13, 14, 6, 11);
            schedule!(w, 14, 15, 7, 12);
            schedule!(w, 15, 0, 8, 13);
        }
        round!(a, b, c, d, e, f, g, h, k[0], w[0]);
        round!(h, a, b, c, d, e, f, g, k[1], w[1]);
        round!(g, h, a, b, c, d, e, f, k[2], w[2]);
        round!(f, g, h, a, b, c, d, e, k[3], w[3]);
        round!(e, f, g, h, a, b, c, d, k[4], w[4]);
        round!(d, e, f, g, h, a, b, c, k[5], w[5]);
        round!(c, d, e, f, g, h, a, b, k[6], w[6]);
        round!(b, c, d, e, f, g, h, a, k[7], w[7]);
        round!(a, b, c, d, e, f, g, h, k[8], w[8]);
        round!(h, a, b, c, d, e, f, g, k[9], w[9]);
        round!(g, h, a, b, c, d, e, f, k[10], w[10]);
        round!(f, g, h, a, b, c, d, e, k[11], w[11]);
        round!(e, f, g, h, a, b, c, d, k[12], w[12]);
        round!(d, e, f, g, h, a, b, c, k[13], w[13]);
        round!(c, d, e, f, g, h, a, b, k[14], w[14]);
        round!(b, c, d, e, f, g, h, a, k[15], w[15]);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}

/// A SHA-256 computation in progress.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    /// Bytes of the current block not yet compressed: `block[..used]`.
    block: [u8; BLOCK],
    used: usize,
    /// Bytes absorbed in all.
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Sha256 {
        Sha256::new()
    }
}

impl Sha256 {
    pub const fn new() -> Sha256 {
        Sha256 { state: H0, block: [0; BLOCK], used: 0, total: 0 }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let free = &mut self.block[self.used..];
            let take = free.len().min(data.len());
            let (now, rest) = data.split_at(take);
            free[..take].copy_from_slice(now);
            self.used += take;
            data = rest;
            if self.used == BLOCK {
                compress(&mut self.state, &self.block);
                self.used = 0;
            }
        }
    }

    pub fn finalize(mut self) -> [u8; 32] {
        let bits = self.total.wrapping_mul(8);
        // 0x80, zeros to 56 bytes into a block, the length in bits (big-endian).
        let pad = if self.used < BLOCK - 8 { BLOCK - 8 - self.used } else { 2 * BLOCK - 8 - self.used };
        let mut tail = [0u8; BLOCK + 8];
        tail[0] = 0x80;
        tail[pad..pad + 8].copy_from_slice(&bits.to_be_bytes());
        self.update(&tail[..pad + 8]);
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// SHA-256 of `data`.
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize()
}

/// An HMAC-SHA256 computation in progress. Made once per key and cloned per message, so each
/// message costs only its own blocks: the key's two padded blocks are absorbed in [`new`].
///
/// [`new`]: HmacSha256::new
#[derive(Clone)]
pub struct HmacSha256 {
    inner: Sha256,
    outer: Sha256,
}

impl HmacSha256 {
    /// Keys of any length: a key longer than a block is hashed first (RFC 2104).
    pub fn new(key: &[u8]) -> HmacSha256 {
        let mut padded = [0u8; BLOCK];
        if key.len() > BLOCK {
            padded[..32].copy_from_slice(&digest(key));
        } else {
            padded[..key.len()].copy_from_slice(key);
        }
        let (mut inner, mut outer) = (Sha256::new(), Sha256::new());
        inner.update(&padded.map(|b| b ^ 0x36));
        outer.update(&padded.map(|b| b ^ 0x5c));
        HmacSha256 { inner, outer }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
    }

    pub fn finalize(self) -> [u8; 32] {
        let mut outer = self.outer;
        outer.update(&self.inner.finalize());
        outer.finalize()
    }
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}
