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
