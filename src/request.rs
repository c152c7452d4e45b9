//! The one [`RequestView`] adapter: header pairs in order (names lowercase, as Envoy hands them
//! over) and the downstream address. The filter glue fills it from Envoy; the native tests, the
//! fuzz targets and the benches fill it by hand, so they all exercise the adapter that ships.

use crate::router::RequestView;

/// Where the downstream address comes from.
#[derive(Debug, Clone, Default)]
pub enum SourceAddress {
    /// Unknown: no `client_ip` source can match.
    #[default]
    None,
    /// Already known, `ip:port` or `[ip6]:port`.
    Known(String),
    /// Read on demand (the glue's host call), only when a `client_ip` source is reached.
    Lazy(fn() -> Option<String>),
}

/// A request as the router reads it.
#[derive(Debug, Clone, Default)]
pub struct HeaderPairs {
    pub headers: Vec<(String, Vec<u8>)>,
    pub source: SourceAddress,
}

impl HeaderPairs {
    /// A request from `(name, value)` pairs, with no downstream address.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (N, V)>) -> HeaderPairs {
        HeaderPairs {
            headers: pairs.into_iter().map(|(n, v)| (n.as_ref().to_owned(), v.as_ref().to_vec())).collect(),
            source: SourceAddress::None,
        }
    }

    /// Adds one header pair (after the others, as a repeated header would arrive).
    pub fn with(mut self, name: &str, value: impl AsRef<[u8]>) -> HeaderPairs {
        self.headers.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// The pairs of proxy-wasm's serialized header map (what `proxy_get_header_map_pairs` hands
    /// back) whose name `wanted` accepts, in order, repeats included: a u32 count, a (name length,
    /// value length) u32 pair per entry, then each name and value followed by a NUL. A truncated
    /// or inconsistent buffer ends the walk; a name that is not UTF-8 is skipped.
    pub fn from_serialized_map(buf: &[u8], wanted: impl Fn(&str) -> bool) -> HeaderPairs {
        let mut headers = Vec::new();
        let u32_at = |at: usize| -> Option<usize> {
            let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
            Some(u32::from_le_bytes(b) as usize)
        };
        let count = u32_at(0).unwrap_or(0);
        let mut data = count.saturating_mul(8).saturating_add(4);
        for i in 0..count {
            let (Some(name_len), Some(value_len)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else { break };
            let Some(name) = buf.get(data..data.saturating_add(name_len)) else { break };
            data = data.saturating_add(name_len).saturating_add(1);
            let Some(value) = buf.get(data..data.saturating_add(value_len)) else { break };
            data = data.saturating_add(value_len).saturating_add(1);
            if let Ok(name) = std::str::from_utf8(name)
                && wanted(name)
            {
                headers.push((name.to_owned(), value.to_vec()));
            }
        }
        HeaderPairs { headers, source: SourceAddress::None }
    }

    /// The downstream address, read by `read` only if a `client_ip` source is reached.
    pub fn with_lazy_source(mut self, read: fn() -> Option<String>) -> HeaderPairs {
        self.source = SourceAddress::Lazy(read);
        self
    }

    /// Sets the downstream address.
    pub fn with_source(mut self, address: &str) -> HeaderPairs {
        self.source = SourceAddress::Known(address.to_owned());
        self
    }
}

impl RequestView for HeaderPairs {
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    fn source_address(&self) -> Option<String> {
        match &self.source {
            SourceAddress::None => None,
            SourceAddress::Known(a) => Some(a.clone()),
            SourceAddress::Lazy(read) => read(),
        }
    }
}

/// proxy-wasm's serialized header map of `pairs` (what `proxy_get_header_map_pairs` hands back):
/// the inverse of [`HeaderPairs::from_serialized_map`], for tests and benches.
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (n, v) in pairs {
        out.extend((n.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend(n.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_keep_their_order_and_other_names_are_skipped() {
        let r = HeaderPairs::from_pairs([("cookie", "a=1"), ("x", "y")]).with("cookie", "b=2");
        let got: Vec<&[u8]> = r.header_values("cookie").collect();
        assert_eq!(got, [&b"a=1"[..], &b"b=2"[..]]);
        assert_eq!(r.header_values("absent").count(), 0);
    }

    #[test]
    fn serialized_pairs_come_back_in_order_repeats_included_unwanted_left_out() {
        let pairs = [(":path", "/a?b=c"), ("cookie", "a=1"), ("x", ""), ("cookie", "b=2"), ("host", "h")];
        let all = HeaderPairs::from_serialized_map(&serialize_map(&pairs), |_| true);
        let want: Vec<(String, Vec<u8>)> =
            pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect();
        assert_eq!(all.headers, want);
        let cookies = HeaderPairs::from_serialized_map(&serialize_map(&pairs), |n| n == "cookie");
        let got: Vec<&[u8]> = cookies.header_values("cookie").collect();
        assert_eq!(got, [&b"a=1"[..], &b"b=2"[..]]);
        assert_eq!(cookies.headers.len(), 2);
    }

    #[test]
    fn truncated_or_lying_serialized_maps_end_the_walk_without_panicking() {
        let full = serialize_map(&[("cookie", "a=1"), ("x-user", "u")]);
        // Every cut short of the last value's end (its trailing NUL is not needed) loses a pair.
        for cut in 0..full.len() - 1 {
            let got = HeaderPairs::from_serialized_map(&full[..cut], |_| true);
            assert!(got.headers.len() < 2, "cut {cut}: {:?}", got.headers);
        }
        assert_eq!(HeaderPairs::from_serialized_map(&full, |_| true).headers.len(), 2);
        let mut lying = full.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderPairs::from_serialized_map(&lying, |_| true).headers.is_empty());
        let mut long_name = full.clone();
        long_name[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderPairs::from_serialized_map(&long_name, |_| true).headers.is_empty());
        assert!(HeaderPairs::from_serialized_map(&[], |_| true).headers.is_empty());
    }

    #[test]
    fn source_address_known_lazy_or_absent() {
        assert_eq!(HeaderPairs::default().source_address(), None);
        assert_eq!(
            HeaderPairs::default().with_source("10.0.0.1:5").source_address().as_deref(),
            Some("10.0.0.1:5")
        );
        let lazy =
            HeaderPairs { source: SourceAddress::Lazy(|| Some("[::1]:9".to_owned())), ..Default::default() };
        assert_eq!(lazy.source_address().as_deref(), Some("[::1]:9"));
    }
}
