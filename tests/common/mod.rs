//! Shared by the native test crates: a request made of header pairs.
// Each test crate compiles this module and uses a part of it.
#![allow(dead_code)]

use session_router::router::RequestView;

pub struct Req(pub Vec<(String, Vec<u8>)>);

impl RequestView for Req {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
    fn source_address(&self) -> Option<String> {
        None
    }
}

pub fn req(pairs: &[(&str, &str)]) -> Req {
    Req(pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect())
}
