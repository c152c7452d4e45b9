//! The query string of a request's `:path`: the first parameter with a given name,
//! percent-decoded (`+` is a space, as in HTML forms).

#[derive(Debug, PartialEq, Eq)]
pub enum QueryValue {
    Absent,
    Found(Vec<u8>),
    /// A `%` not followed by two hex digits.
    Malformed,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = s.iter();
    while let Some(&b) = i.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = hex(*i.next()?)?;
                let lo = hex(*i.next()?)?;
                hi << 4 | lo
            }
            _ => b,
        });
    }
    Some(out)
}

pub fn param(path: &[u8], name: &str) -> QueryValue {
    let path = path.split(|&b| b == b'#').next().unwrap_or_default();
    let Some(q) = path.iter().position(|&b| b == b'?') else {
        return QueryValue::Absent;
    };
    let query = path.get(q + 1..).unwrap_or_default();
    for pair in query.split(|&b| b == b'&') {
        let (n, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (pair.get(..eq).unwrap_or_default(), pair.get(eq + 1..).unwrap_or_default()),
            None => (pair, &b""[..]),
        };
        let matches = if n.contains(&b'%') || n.contains(&b'+') {
            percent_decode(n).is_some_and(|n| n == name.as_bytes())
        } else {
            n == name.as_bytes()
        };
        if matches {
            return match percent_decode(v) {
                Some(v) => QueryValue::Found(v),
                None => QueryValue::Malformed,
            };
        }
    }
    QueryValue::Absent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(s: &str) -> QueryValue {
        QueryValue::Found(s.as_bytes().to_vec())
    }

    #[test]
    fn finds_first_matching_parameter() {
        assert_eq!(param(b"/a?sid=abc", "sid"), found("abc"));
        assert_eq!(param(b"/a?x=1&sid=abc&sid=def", "sid"), found("abc"));
        assert_eq!(param(b"/a?sidx=1&xsid=2", "sid"), QueryValue::Absent);
        assert_eq!(param(b"/a", "sid"), QueryValue::Absent);
        assert_eq!(param(b"/a?", "sid"), QueryValue::Absent);
        assert_eq!(param(b"/a?sid", "sid"), found(""));
        assert_eq!(param(b"/a?sid=1#frag&sid=2", "sid"), found("1"));
        assert_eq!(param(b"/a#x?sid=1", "sid"), QueryValue::Absent);
    }

    #[test]
    fn percent_decodes() {
        assert_eq!(param(b"/?sid=a%20b+c", "sid"), found("a b c"));
        assert_eq!(param(b"/?s%69d=v", "sid"), found("v"));
        assert_eq!(param(b"/?sid=%E2%82%AC", "sid"), found("€"));
        assert_eq!(param(b"/?sid=%00", "sid"), QueryValue::Found(vec![0]));
        assert_eq!(param(b"/?sid=%zz", "sid"), QueryValue::Malformed);
        assert_eq!(param(b"/?sid=%4", "sid"), QueryValue::Malformed);
        assert_eq!(param(b"/?sid=abc%", "sid"), QueryValue::Malformed);
    }
}
