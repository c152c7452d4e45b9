//! `sticky_cookie`: the cookie's name, lifetime and attributes, and its signing and verify-only
//! keys (never echoed in errors).

use super::raw::{RawSecret, RawSticky};
use super::*;
use crate::sticky::{CookieKey, VerifiedCookies};

const MIN_IDLE_TIMEOUT_SECONDS: u64 = 4;

/// RFC 6265 cookie names are tokens.
pub(super) fn check_cookie_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if !super::compile::is_token(name) {
        return Err(err(field, format!("{name:?} is not a valid cookie name (RFC 6265 token)")));
    }
    Ok(())
}

pub(super) fn compile_sticky(
    raw: RawSticky,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Sticky, ConfigError> {
    check_cookie_name("sticky_cookie.name", &raw.name)?;
    if raw.ttl_seconds == 0 || raw.ttl_seconds > MAX_TTL_SECONDS {
        return Err(err(
            "sticky_cookie.ttl_seconds",
            format!("{} is out of range 1..={MAX_TTL_SECONDS} (400 days)", raw.ttl_seconds),
        ));
    }
    // The cookie is re-issued once a quarter of the idle timeout has passed (whole seconds):
    // below 4 s that is every response, a Set-Cookie per request.
    if let Some(idle) = raw.idle_timeout_seconds
        && (1..MIN_IDLE_TIMEOUT_SECONDS).contains(&idle)
    {
        return Err(err(
            "sticky_cookie.idle_timeout_seconds",
            format!(
                "{idle} is below {MIN_IDLE_TIMEOUT_SECONDS}: the cookie is refreshed every quarter of it, so every response would set a cookie"
            ),
        ));
    }
    if let Some(idle) = raw.idle_timeout_seconds
        && (idle == 0 || idle > raw.ttl_seconds)
    {
        return Err(err(
            "sticky_cookie.idle_timeout_seconds",
            format!("{idle} is out of range 1..=ttl_seconds ({})", raw.ttl_seconds),
        ));
    }
    let secret = match (raw.secret, raw.secret_env) {
        (Some(s), None) => s,
        (None, Some(var)) => env(&var).ok_or_else(|| {
            err("sticky_cookie.secret_env", format!("{var:?} is not set in the proxy's environment"))
        })?,
        (Some(_), Some(_)) => return Err(err("sticky_cookie", "set either secret or secret_env, not both")),
        (None, None) => return Err(err("sticky_cookie", "needs secret or secret_env")),
    };
    if secret.len() < MIN_SECRET_BYTES {
        // Never echo the secret itself.
        return Err(err(
            "sticky_cookie.secret",
            format!("is {} bytes, at least {MIN_SECRET_BYTES} are required", secret.len()),
        ));
    }
    let verify_secrets = compile_verify_secrets(raw.verify_secrets.unwrap_or_default(), &secret, env)?;
    let signing = CookieKey::for_cookie(secret.as_bytes(), &raw.name);
    let mut keys = Vec::with_capacity(1 + verify_secrets.len());
    keys.push(signing.clone());
    for v in &verify_secrets {
        keys.push(CookieKey::for_cookie(v.as_bytes(), &raw.name));
    }
    let path = raw.path.unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') || path.chars().any(|c| c.is_control() || c == ';') {
        return Err(err(
            "sticky_cookie.path",
            format!("{path:?} must start with / and contain no ; or controls"),
        ));
    }
    if let Some(domain) = &raw.domain {
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return Err(err("sticky_cookie.domain", format!("{domain:?} is not a domain name")));
        }
    }
    let secure = raw.secure.unwrap_or(true);
    let same_site = raw.same_site.unwrap_or(SameSite::Lax);
    if same_site == SameSite::None && !secure {
        return Err(err(
            "sticky_cookie.same_site",
            "None requires secure: true (browsers drop it otherwise)",
        ));
    }
    // Browsers match the prefixes without regard to case (RFC 6265bis §4.1.3).
    let lower_name = raw.name.to_ascii_lowercase();
    if lower_name.starts_with("__secure-") && !secure {
        return Err(err("sticky_cookie.name", format!("{:?} requires secure: true", raw.name)));
    }
    if lower_name.starts_with("__host-") && (!secure || path != "/" || raw.domain.is_some()) {
        return Err(err(
            "sticky_cookie.name",
            format!("{:?} requires secure: true, path \"/\" and no domain", raw.name),
        ));
    }
    Ok(Sticky {
        name: raw.name,
        ttl_seconds: raw.ttl_seconds,
        idle_timeout_seconds: raw.idle_timeout_seconds,
        key: signing,
        verified: VerifiedCookies::new(keys.clone()),
        keys,
        path,
        domain: raw.domain,
        secure,
        http_only: raw.http_only.unwrap_or(true),
        same_site,
    })
}

/// `sticky_cookie.verify_secrets`: verify-only keys, each inline or from the environment, each
/// at least as long as the signing key must be and different from it and from each other.
fn compile_verify_secrets(
    raw: Vec<RawSecret>,
    signing: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    if raw.len() > MAX_VERIFY_SECRETS {
        return Err(err(
            "sticky_cookie.verify_secrets",
            format!("has {} keys, at most {MAX_VERIFY_SECRETS}", raw.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("sticky_cookie.verify_secrets[{i}]{f}");
        let secret = match (r.secret, r.secret_env) {
            (Some(s), None) => s,
            (None, Some(var)) => env(&var).ok_or_else(|| {
                err(field(".secret_env"), format!("{var:?} is not set in the proxy's environment"))
            })?,
            (Some(_), Some(_)) => return Err(err(field(""), "set either secret or secret_env, not both")),
            (None, None) => return Err(err(field(""), "needs secret or secret_env")),
        };
        // Never echo a secret.
        if secret.len() < MIN_SECRET_BYTES {
            return Err(err(
                field(".secret"),
                format!("is {} bytes, at least {MIN_SECRET_BYTES} are required", secret.len()),
            ));
        }
        if secret == signing {
            return Err(err(field(""), "is the signing key (secret / secret_env) again"));
        }
        if out.contains(&secret) {
            return Err(err(field(""), "repeats an earlier verify key"));
        }
        out.push(secret);
    }
    Ok(out)
}
