//! `cookie::values`: finding one cookie among many `cookie` header fields (RFC 6265 §4.2;
//! HTTP/2 splits cookies over several fields).
//!
//! Raw input: the first line is the cookie name, every further line one `cookie` header value.
//! Structured input: a cookie `name=value` hidden among arbitrary other pairs, spread over
//! several fields, must be found exactly once, with its value unwrapped from quotes.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_router::cookie;
use session_router_fuzz::{Input, input, lines};

#[derive(Arbitrary, Debug)]
struct Hidden {
    name: String,
    value: Vec<u8>,
    quoted: bool,
    /// Junk pairs before and after ours; `split_after[i]` ends a header field after pair i.
    junk: Vec<(Vec<u8>, Vec<u8>)>,
    at: usize,
    split_after: Vec<bool>,
    spaces: (u8, u8, u8, u8),
}

/// What the parser must report: every value our name carries in `headers`.
fn check_invariants(headers: &[&[u8]], name: &str) -> usize {
    let found: Vec<&[u8]> = cookie::values(headers.iter().copied(), name).collect();
    let pairs: usize = headers.iter().map(|h| h.split(|&b| b == b';').count()).sum();
    assert!(found.len() <= pairs, "more values than pairs");
    for v in &found {
        assert!(!v.contains(&b';'), "a value spans a pair separator: {v:?}");
        // Every value is a slice of one of the header fields (no copying, no invention).
        let inside = headers.iter().any(|h| {
            let (start, end) = (h.as_ptr() as usize, h.as_ptr() as usize + h.len());
            let p = v.as_ptr() as usize;
            p >= start && p + v.len() <= end
        });
        assert!(inside, "value not taken from a header");
    }
    found.len()
}

fn is_cookie_octet(b: u8) -> bool {
    // RFC 6265 cookie-octet: visible ASCII except DQUOTE, comma, semicolon and backslash.
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn pair_name(pair: &[u8]) -> Option<&[u8]> {
    let pair = pair.trim_ascii();
    let eq = pair.iter().position(|&b| b == b'=')?;
    Some(pair[..eq].trim_ascii())
}

fuzz_target!(|data: &[u8]| {
    match input(data) {
        Input::Raw(raw) => {
            let lines = lines(raw);
            let name = std::str::from_utf8(lines[0]).unwrap_or("srv");
            check_invariants(&lines[1..], name);
            check_invariants(&lines[1..], "srv");
            check_invariants(&lines[1..], "JSESSIONID");
        }
        Input::Structured(u) => {
            let Ok(h) = Hidden::arbitrary_take_rest(u) else { return };
            // A configured cookie name is a non-empty RFC 6265 token (config.rs checks it).
            if h.name.is_empty() || !h.name.chars().all(is_token_char) {
                return;
            }
            let value: Vec<u8> = h.value.into_iter().filter(|&b| is_cookie_octet(b)).collect();
            let sp = |n: u8| " ".repeat(usize::from(n % 3));
            let ours = format!(
                "{}{}{}={}{}{}",
                sp(h.spaces.0),
                h.name,
                sp(h.spaces.1),
                sp(h.spaces.2),
                if h.quoted {
                    format!("\"{}\"", String::from_utf8_lossy(&value))
                } else {
                    String::from_utf8_lossy(&value).into_owned()
                },
                sp(h.spaces.3),
            );
            let mut pairs: Vec<Vec<u8>> = h
                .junk
                .into_iter()
                .map(|(n, v)| {
                    let mut p: Vec<u8> = n.into_iter().filter(|&b| b != b';').collect();
                    p.push(b'=');
                    p.extend(v.into_iter().filter(|&b| b != b';'));
                    p
                })
                // A junk pair must not be another copy of ours.
                .filter(|p| pair_name(p) != Some(h.name.as_bytes()))
                .collect();
            let at = h.at % (pairs.len() + 1);
            pairs.insert(at, ours.into_bytes());
            let mut fields: Vec<Vec<u8>> = vec![Vec::new()];
            for (i, p) in pairs.iter().enumerate() {
                let field = fields.last_mut().expect("one field");
                if !field.is_empty() {
                    field.push(b';');
                }
                field.extend_from_slice(p);
                if h.split_after.get(i).copied().unwrap_or(false) {
                    fields.push(Vec::new());
                }
            }
            let headers: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
            let found: Vec<&[u8]> = cookie::values(headers.iter().copied(), &h.name).collect();
            assert_eq!(
                found,
                vec![value.as_slice()],
                "headers {:?}",
                fields.iter().map(|f| String::from_utf8_lossy(f)).collect::<Vec<_>>()
            );
            check_invariants(&headers, &h.name);
        }
    }
});
