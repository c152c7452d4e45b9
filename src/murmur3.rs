//! MurmurHash3 x64_128 (Austin Appleby's reference `MurmurHash3_x64_128`), over a byte slice.
//!
//! Written out here rather than taken from the `murmur3` crate, which reads through
//! `std::io::Read` and costs several times more per short key. The ring uses the first
//! 64-bit half (`h1`) with seed 0; test vectors come from the reference implementation
//! (the same values Python's `mmh3.hash64(.., signed=False)[0]` prints).

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[inline]
fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

#[inline]
fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// Little-endian load of up to 8 bytes (missing high bytes are zero), as the reference tail does.
#[inline]
fn load_le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Both 64-bit halves of MurmurHash3_x64_128.
pub fn murmur3_x64_128(data: &[u8], seed: u32) -> (u64, u64) {
    let mut h1 = u64::from(seed);
    let mut h2 = u64::from(seed);
    let mut blocks = data.chunks_exact(16);
    for block in blocks.by_ref() {
        let (lo, hi) = block.split_at(8);
        h1 ^= mix_k1(load_le(lo));
        h1 = h1.rotate_left(27).wrapping_add(h2).wrapping_mul(5).wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(load_le(hi));
        h2 = h2.rotate_left(31).wrapping_add(h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    if tail.len() > 8 {
        h2 ^= mix_k2(load_le(tail.get(8..).unwrap_or_default()));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(load_le(tail.get(..8.min(tail.len())).unwrap_or_default()));
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

/// The ring's hash: the first half of MurmurHash3_x64_128 with seed 0.
#[inline]
pub fn hash64(data: &[u8]) -> u64 {
    murmur3_x64_128(data, 0).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the reference implementation (`mmh3.hash64(data, seed, signed=False)`).
    #[test]
    fn matches_reference_vectors() {
        let cases: &[(&[u8], u64, u64)] = &[
            (b"", 0, 0),
            (b"a", 0x8555_5565_f659_7889, 0xe6b5_3a48_510e_895a),
            (b"hello", 0xcbd8_a7b3_41bd_9b02, 0x5b1e_906a_48ae_1d19),
            (b"The quick brown fox jumps over the lazy dog", 0xe34b_bc7b_bc07_1b6c, 0x7a43_3ca9_c49a_9347),
            (b"0123456789abcdef", 0x4be0_6d94_cf4a_d1a7, 0x87c3_5b5c_63a7_08da),
            (b"0123456789abcdef0", 0xeb24_ae87_85a5_c075, 0x73fb_68b3_3131_28ca),
        ];
        for &(data, h1, h2) in cases {
            assert_eq!(murmur3_x64_128(data, 0), (h1, h2), "{data:?}");
        }
        let all_tails: Vec<u8> = (0..31).collect();
        assert_eq!(murmur3_x64_128(&all_tails, 0), (0x053d_d3e1_a32c_d094, 0x9ee5_9aef_b400_5490));
        assert_eq!(murmur3_x64_128(b"x", 7), (16_065_231_619_007_573_442, 18_130_913_057_876_547_119));
    }
}
