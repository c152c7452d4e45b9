//! src/b64.rs against the `base64` crate's engines the filter used before (the same strictness):
//! every encoding it writes, and every input it accepts or refuses, over random and edge inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::xorshift as rng;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD};
use session_router::b64::{self, Alphabet, Padding};

const STANDARD_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const URL_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[test]
fn encodes_as_the_base64_crate_does() {
    let mut next = rng(0x9e37_79b9_7f4a_7c15);
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        assert_eq!(b64::encode(Alphabet::Standard, true, &bytes), STANDARD.encode(&bytes));
        assert_eq!(b64::encode(Alphabet::UrlSafe, false, &bytes), URL_SAFE_NO_PAD.encode(&bytes));
    }
}

/// Every decoder the filter uses, beside the engine that defines it.
const DECODERS: [(Alphabet, Padding, &GeneralPurpose); 3] = [
    (Alphabet::UrlSafe, Padding::None, &URL_SAFE_NO_PAD),
    (Alphabet::UrlSafe, Padding::Optional, &URL_OPTIONAL),
    (Alphabet::Standard, Padding::Optional, &STANDARD_OPTIONAL),
];

fn check(input: &[u8]) {
    for (alphabet, padding, engine) in DECODERS {
        let theirs = engine.decode(input).ok();
        let ours = b64::decode(alphabet, padding, input);
        assert_eq!(ours, theirs, "{alphabet:?} {padding:?} {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn accepts_and_refuses_exactly_what_the_base64_crate_does() {
    for input in [
        &b""[..],
        b"A",
        b"AA",
        b"AQ",
        b"AR",
        b"AB",
        b"AAA",
        b"AAE",
        b"AAB",
        b"AAAA",
        b"AA==",
        b"AQ==",
        b"AR==",
        b"AAE=",
        b"AAF=",
        b"A===",
        b"AA=",
        b"AA===",
        b"=AAA",
        b"A=AA",
        b"AA=A",
        b"-_-_",
        b"+/+/",
        b"a b=",
        b"QUJD",
        b"QUJDRA",
        b"QUJDRA==",
        b"QUJDRA=",
        b"QUJDRA===",
        b"QUJDRA==\n",
    ] {
        check(input);
    }
    let mut next = rng(0x2545_f491_4f6c_dd1d);
    let symbols = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. ";
    for _ in 0..50_000 {
        let len = (next() % 14) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                // Mostly url-safe symbols, sometimes padding or foreign ones.
                let pick = if r.is_multiple_of(8) {
                    62 + (r >> 8) % (symbols.len() as u64 - 62)
                } else {
                    (r >> 8) % 64
                };
                symbols[pick as usize]
            })
            .collect();
        check(&input);
        // A valid encoding of random bytes, then a single symbol changed.
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut encoded = URL_SAFE_NO_PAD.encode(&bytes).into_bytes();
        check(&encoded);
        if let Some(c) = encoded.last_mut() {
            *c = symbols[(next() % symbols.len() as u64) as usize];
            check(&encoded);
        }
    }
}

#[test]
fn decode_into_refuses_a_buffer_too_small() {
    let mut out = [0u8; 2];
    assert_eq!(b64::decode_into(Alphabet::UrlSafe, Padding::None, b"QUJD", &mut out), None);
    let mut out = [0u8; 3];
    assert_eq!(b64::decode_into(Alphabet::UrlSafe, Padding::None, b"QUJD", &mut out), Some(3));
    assert_eq!(&out, b"ABC");
}
