//! src/sha256.rs against the `sha2` and `hmac` crates the filter used before, and against the
//! published test vectors: FIPS 180-4 (via NIST's examples) and RFC 4231.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::xorshift as rng;
use hmac::{Hmac, KeyInit, Mac};
use session_router::sha256::{HmacSha256, Sha256, ct_eq, digest};
use sha2::Digest as _;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn bytes(next: &mut impl FnMut() -> u64, n: usize) -> Vec<u8> {
    (0..n).map(|_| next() as u8).collect()
}

fn reference_hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[test]
fn nist_vectors() {
    let cases = [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(digest(input.as_bytes()).to_vec(), hex(want), "{input:?}");
    }
    // One million 'a's, fed in uneven pieces.
    let mut h = Sha256::new();
    let a = [b'a'; 997];
    let mut left = 1_000_000;
    while left > 0 {
        let n = left.min(a.len());
        h.update(&a[..n]);
        left -= n;
    }
    assert_eq!(
        h.finalize().to_vec(),
        hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    );
}

#[test]
fn rfc4231_vectors() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
        (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (vec![0xaa; 20], vec![0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (
            (1..=25).collect(),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (key, data, want) in cases {
        let mut mac = HmacSha256::new(&key);
        mac.update(&data);
        assert_eq!(mac.finalize().to_vec(), hex(want));
    }
}

/// Every length from 0 to three blocks and some longer, in one piece and split at random: the
/// padding's two cases (the length fits the last block or needs another) and every split.
#[test]
fn sha256_matches_sha2() {
    let mut next = rng(0x5eed_5a25);
    let mut lengths: Vec<usize> = (0..=200).collect();
    lengths.extend([255, 256, 257, 1000, 4096, 4097, 10_000]);
    for n in lengths {
        let data = bytes(&mut next, n);
        let want: [u8; 32] = sha2::Sha256::digest(&data).into();
        assert_eq!(digest(&data), want, "len {n}");
        let mut h = Sha256::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let cut = (next() as usize % 80).min(rest.len());
            let (a, b) = rest.split_at(cut);
            h.update(a);
            rest = b;
        }
        assert_eq!(h.finalize(), want, "len {n}, split");
    }
}

/// Keys of every length around the block size, messages of many lengths, and a key state
/// cloned for several messages (as the cookie codec uses it).
#[test]
fn hmac_matches_hmac_crate() {
    let mut next = rng(0x5eed_4ac0);
    for key_len in (0..=140).chain([200, 1000]) {
        let key = bytes(&mut next, key_len);
        let keyed = HmacSha256::new(&key);
        for _ in 0..4 {
            let len = next() as usize % 300;
            let data = bytes(&mut next, len);
            let mut mac = keyed.clone();
            let (a, b) = data.split_at(next() as usize % (data.len() + 1));
            mac.update(a);
            mac.update(b);
            assert_eq!(mac.finalize(), reference_hmac(&key, &data), "key {key_len}, data {}", data.len());
        }
    }
}

#[test]
fn ct_eq_compares_whole_slices() {
    assert!(ct_eq(b"", b""));
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"xbc"));
    assert!(!ct_eq(b"abc", b"ab"));
    let mut next = rng(7);
    for _ in 0..1000 {
        let a = bytes(&mut next, 16);
        let mut b = a.clone();
        let i = next() as usize % 16;
        b[i] ^= 1 << (next() % 8);
        assert!(ct_eq(&a, &a.clone()));
        assert!(!ct_eq(&a, &b));
    }
}
