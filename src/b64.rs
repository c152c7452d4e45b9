//! base64 (RFC 4648): the standard alphabet for the stateful-session header, base64url for sticky
//! cookies and JWT payloads. Strict where it reads: an invalid symbol, an impossible length,
//! padding where none is allowed or in the wrong place, and non-zero bits left over in the last
//! symbol are all refused, so every byte string has exactly one accepted encoding (what the
//! `base64` crate's engines did here, in a tenth of the code).

/// Which alphabet: symbols 62 and 63 are `+` `/` (standard) or `-` `_` (url-safe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    Standard,
    UrlSafe,
}

/// What a decoder accepts at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No `=` at all.
    None,
    /// Up to the canonical padding: none, some or all of it (JWT issuers differ).
    Optional,
}

impl Alphabet {
    fn symbol(self, v: u8) -> u8 {
        match v {
            0..=25 => b'A' + v,
            26..=51 => b'a' + (v - 26),
            52..=61 => b'0' + (v - 52),
            62 if self == Alphabet::Standard => b'+',
            63 if self == Alphabet::Standard => b'/',
            62 => b'-',
            _ => b'_',
        }
    }

    fn value(self, c: u8) -> Option<u32> {
        Some(u32::from(match (c, self) {
            (b'A'..=b'Z', _) => c - b'A',
            (b'a'..=b'z', _) => c - b'a' + 26,
            (b'0'..=b'9', _) => c - b'0' + 52,
            (b'+', Alphabet::Standard) | (b'-', Alphabet::UrlSafe) => 62,
            (b'/', Alphabet::Standard) | (b'_', Alphabet::UrlSafe) => 63,
            _ => return None,
        }))
    }
}

/// `input` encoded, with `=` padding when `pad`.
pub fn encode(alphabet: Alphabet, pad: bool, input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = b(0) << 16 | b(1) << 8 | b(2);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                out.push(char::from(alphabet.symbol((n >> (18 - 6 * i)) as u8 & 63)));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The decoded length of `input` (padding already removed), or `None` for an impossible one.
fn decoded_len(unpadded: usize) -> Option<usize> {
    match unpadded % 4 {
        1 => None,
        r => Some(unpadded / 4 * 3 + r.saturating_sub(1)),
    }
}

/// Removes the padding `padding` allows; `None` when what is there is not allowed.
fn unpad(input: &[u8], padding: Padding) -> Option<&[u8]> {
    let pads = input.iter().rev().take_while(|&&c| c == b'=').count();
    if pads == 0 {
        return Some(input);
    }
    let body = input.get(..input.len() - pads)?;
    // At most the padding the unpadded length calls for (0, 2 or 1 for 0, 2 or 3 symbols over).
    (padding == Padding::Optional && pads <= (4 - body.len() % 4) % 4).then_some(body)
}

/// Decodes `input` into `out`, returning how many bytes it wrote; `None` when `input` is not a
/// canonical encoding or `out` is too small.
pub fn decode_into(alphabet: Alphabet, padding: Padding, input: &[u8], out: &mut [u8]) -> Option<usize> {
    let input = unpad(input, padding)?;
    let len = decoded_len(input.len())?;
    let out = out.get_mut(..len)?;
    let mut at = 0;
    for chunk in input.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= alphabet.value(c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        // Bits past the last whole byte must be zero (one encoding per byte string).
        if n & (0x00ff_ffff >> (8 * bytes)) != 0 {
            return None;
        }
        for i in 0..bytes {
            *out.get_mut(at)? = (n >> (16 - 8 * i)) as u8;
            at += 1;
        }
    }
    Some(at)
}

/// Decodes `input`; `None` when it is not a canonical encoding.
pub fn decode(alphabet: Alphabet, padding: Padding, input: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0; decoded_len(input.len()).unwrap_or(input.len())];
    let n = decode_into(alphabet, padding, input, &mut out)?;
    out.truncate(n);
    Some(out)
}
