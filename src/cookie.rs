//! `Cookie` request headers (RFC 6265 §4.2) and the `Set-Cookie` line for the sticky cookie.

use crate::config::{SameSite, Sticky};

/// Every value of cookie `name` across all `cookie` header fields, in order (HTTP/2 splits
/// cookies over several fields). Names are case-sensitive; a DQUOTE-wrapped value is unwrapped;
/// a pair without `=`, or with an unterminated quote, is skipped.
pub fn values<'a, 'n>(
    cookie_headers: impl Iterator<Item = &'a [u8]> + 'n,
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + 'n
where
    'a: 'n,
{
    cookie_headers.flat_map(|h| h.split(|&b| b == b';')).filter_map(move |pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (n, v) = (pair.get(..eq)?, pair.get(eq + 1..)?);
        if n.trim_ascii() != name.as_bytes() {
            return None;
        }
        unquote(v.trim_ascii())
    })
}

fn unquote(v: &[u8]) -> Option<&[u8]> {
    match v {
        [b'"', inner @ .., b'"'] => Some(inner),
        [b'"', ..] | [.., b'"'] => None,
        _ => Some(v),
    }
}

/// The `Set-Cookie` header value carrying `value` for `max_age` seconds.
pub fn set_cookie(sticky: &Sticky, value: &str, max_age: u64) -> String {
    let mut s = format!("{}={}; Path={}; Max-Age={}", sticky.name, value, sticky.path, max_age);
    if let Some(domain) = &sticky.domain {
        s.push_str("; Domain=");
        s.push_str(domain);
    }
    if sticky.http_only {
        s.push_str("; HttpOnly");
    }
    if sticky.secure {
        s.push_str("; Secure");
    }
    s.push_str(match sticky.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all<'a>(headers: &[&'a str], name: &str) -> Vec<&'a str> {
        values(headers.iter().map(|h| h.as_bytes()), name).map(|v| std::str::from_utf8(v).unwrap()).collect()
    }

    #[test]
    fn finds_cookie_among_many_and_across_fields() {
        assert_eq!(all(&["a=1; sess=xyz; b=2"], "sess"), ["xyz"]);
        assert_eq!(all(&["a=1", "b=2;sess=second"], "sess"), ["second"]);
        assert_eq!(all(&["sess=a; sess=b"], "sess"), ["a", "b"]);
        assert_eq!(all(&["  sess =  spaced ;x=1"], "sess"), ["spaced"]);
    }

    #[test]
    fn quoting_and_malformed_pairs() {
        assert_eq!(all(&[r#"sess="quoted""#], "sess"), ["quoted"]);
        assert!(all(&[r#"sess="unterminated"#], "sess").is_empty());
        assert!(all(&[r#"sess=unopened""#], "sess").is_empty());
        assert_eq!(all(&[r#"sess="""#], "sess"), [""]);
        assert!(all(&["sess"], "sess").is_empty());
        assert!(all(&["=abc"], "sess").is_empty());
        assert!(all(&[""], "sess").is_empty());
        assert!(all(&[";;;"], "sess").is_empty());
    }

    #[test]
    fn names_are_case_sensitive() {
        assert!(all(&["SESS=a; Sess=b; __host-sess=c"], "sess").is_empty());
        assert_eq!(all(&["SESS=a; sess=b"], "sess"), ["b"]);
    }

    #[test]
    fn client_sent_attributes_do_not_confuse() {
        assert_eq!(all(&["sess=x; Path=/; Secure"], "sess"), ["x"]);
        assert_eq!(all(&["sess=a=b=c"], "sess"), ["a=b=c"]);
    }
}
