//! `query::param`: the first query parameter with a given name in a request's `:path`,
//! percent-decoded (`+` is a space).
//!
//! Raw input: line 1 is the `:path`, optional line 2 the parameter name (default `sid`).
//! Structured input: a parameter whose name and value are percent-encoded in arbitrary mixed
//! ways (literal, `+`, `%xx`, `%XX`) is placed first in a query followed by arbitrary others,
//! with an arbitrary fragment; `param` must return exactly the original bytes.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_router::query::{self, QueryValue};
use session_router_fuzz::{Input, input, lines, pct_encode};

#[derive(Arbitrary, Debug)]
struct Built {
    path: String,
    name: String,
    value: Vec<u8>,
    name_choices: Vec<u8>,
    value_choices: Vec<u8>,
    rest: Vec<u8>,
    fragment: Option<Vec<u8>>,
}

fn check(path: &[u8], name: &str) {
    match query::param(path, name) {
        QueryValue::Found(v) => assert!(v.len() <= path.len(), "decoded value longer than the path"),
        QueryValue::Absent => {
            let before_fragment = path.split(|&b| b == b'#').next().unwrap_or_default();
            if !before_fragment.contains(&b'?') {
                return;
            }
            // Absent although a pair spelled exactly `name=` is in the query.
            let query = &before_fragment[before_fragment.iter().position(|&b| b == b'?').unwrap_or(0) + 1..];
            let spelled =
                query.split(|&b| b == b'&').any(|p| p.split(|&b| b == b'=').next() == Some(name.as_bytes()));
            assert!(
                !spelled || name.contains('%') || name.contains('+'),
                "missed {name:?} in {:?}",
                String::from_utf8_lossy(path)
            );
        }
        QueryValue::Malformed => assert!(path.contains(&b'%'), "malformed without a %"),
    }
}

fuzz_target!(|data: &[u8]| {
    match input(data) {
        Input::Raw(raw) => {
            let l = lines(raw);
            let name =
                l.get(1).and_then(|n| std::str::from_utf8(n).ok()).filter(|n| !n.is_empty()).unwrap_or("sid");
            check(l[0], name);
            check(l[0], "sid");
            check(raw, "sid");
            // percent_decode never grows its input.
            if let Some(d) = query::percent_decode(l[0]) {
                assert!(d.len() <= l[0].len());
            }
        }
        Input::Structured(u) => {
            let Ok(b) = Built::arbitrary_take_rest(u) else { return };
            if b.name.is_empty() {
                return;
            }
            let path: String = b.path.chars().filter(|&c| c != '?' && c != '#').collect();
            let mut full = format!(
                "{path}?{}={}",
                pct_encode(b.name.as_bytes(), &b.name_choices),
                pct_encode(&b.value, &b.value_choices)
            )
            .into_bytes();
            if !b.rest.is_empty() {
                full.push(b'&');
                full.extend_from_slice(&b.rest);
            }
            if let Some(f) = &b.fragment {
                full.push(b'#');
                full.extend_from_slice(f);
            }
            assert_eq!(
                query::param(&full, &b.name),
                QueryValue::Found(b.value.clone()),
                "path {:?}",
                String::from_utf8_lossy(&full)
            );
            check(&full, &b.name);
        }
    }
});
