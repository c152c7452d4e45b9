//! The checks of the failover scenario's `before` phase that look at single requests: each key
//! source sticks, the sticky cookie is issued, honoured and verified, a forged target header is
//! never followed, and an application's 503 is not a host failure.

use std::collections::HashSet;

use crate::ctx::{APP_COOKIE, Ctx, Expect, STICKY, TARGET_HEADER, TIMEOUT, h, unix_now};
use crate::http::{self, Client};
use crate::jwt::make_jwt;
use crate::observe::check_outsider;

fn repeat(
    ctx: &Ctx,
    client: &mut Client,
    path: &str,
    headers: &[(String, String)],
    expect: Expect,
    n: usize,
) -> Result<(HashSet<String>, Vec<u64>), String> {
    let mut hosts = HashSet::new();
    let mut counts = Vec::new();
    for _ in 0..n {
        let seen = ctx.send(client, path, headers, expect, false)?;
        if seen.status != 200 {
            return Err(format!("HTTP {} from {:?}", seen.status, seen.backend));
        }
        hosts.insert(seen.backend);
        counts.push(seen.count);
    }
    Ok((hosts, counts))
}

fn one(hosts: &HashSet<String>) -> String {
    if hosts.len() == 1 { hosts.iter().next().cloned().unwrap_or_default() } else { format!("{hosts:?}") }
}

pub fn check_sources(ctx: &Ctx, client: &mut Client) -> Result<(), String> {
    let user = format!("{}-alice", ctx.run);
    let exp = unix_now() + 3600;
    let (by_header, c1) = repeat(ctx, client, "/", &[h("x-user-id", &user)], Expect::Hashed, 10)?;
    let bearer = format!("Bearer {}", make_jwt(&user, exp));
    let (by_jwt, c2) = repeat(ctx, client, "/", &[h("authorization", bearer)], Expect::Hashed, 10)?;
    let counts_continue = c1.iter().chain(&c2).copied().eq(1..=20);
    ctx.check(
        by_header.len() == 1 && by_jwt == by_header && counts_continue,
        "the header and JWT sub sources stick",
        format!(
            "x-user-id: {user} → {} (10×), a JWT with sub {user} → {} (10×); one session, counts {}",
            one(&by_header),
            one(&by_jwt),
            if counts_continue { "1..20".to_string() } else { format!("{c1:?} then {c2:?}") }
        ),
    );
    let jsid = format!("{}-js-probe", ctx.run);
    let variants = [
        vec![h("cookie", format!("theme=dark; JSESSIONID={jsid}; lang=en"))],
        vec![h("cookie", format!("JSESSIONID=\"{jsid}\""))],
        vec![h("cookie", "theme=dark"), h("cookie", format!("JSESSIONID={jsid}"))],
    ];
    let mut cookie_hosts = HashSet::new();
    let mut counts = Vec::new();
    for headers in &variants {
        let (hosts, c) = repeat(ctx, client, "/", headers, Expect::Hashed, 5)?;
        cookie_hosts.extend(hosts);
        counts.extend(c);
    }
    ctx.check(
        cookie_hosts.len() == 1 && counts.iter().copied().eq(1..=15),
        "the cookie source sticks",
        format!(
            "JSESSIONID={jsid} plain, quoted, in a second cookie header → {} (15×, one session)",
            one(&cookie_hosts)
        ),
    );
    let (by_query, _) = repeat(ctx, client, &format!("/search?q=1&sid={user}"), &[], Expect::Hashed, 5)?;
    ctx.check(
        by_query == by_header,
        "the query source hashes the same key to the same host",
        format!("?sid={user} → {}", one(&by_query)),
    );
    Ok(())
}

pub fn check_sticky_cookie(ctx: &Ctx, client: &mut Client) -> Result<Option<String>, String> {
    let first = ctx.send(client, "/", &[], Expect::New, false)?;
    let (Some(srv), Some(line), Some(app)) = (first.srv.clone(), first.srv_line.clone(), first.app.clone())
    else {
        ctx.fail(format!("a new visitor got no {STICKY} cookie (status {})", first.status));
        return Ok(None);
    };
    let attributes: Vec<&str> = line.split(';').skip(1).map(str::trim).collect();
    let wanted = ["Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Lax"];
    ctx.check(
        first.status == 200 && wanted.iter().all(|w| attributes.contains(w)) && first.new_session,
        "a new session is issued a sticky cookie",
        format!("{STICKY}=<{} chars>; {} on {}", srv.len(), attributes.join("; "), first.backend),
    );
    let cookie = h("cookie", format!("{STICKY}={srv}; {APP_COOKIE}={app}"));
    let mut hosts = HashSet::new();
    let mut counts = Vec::new();
    let mut reissued = 0;
    for _ in 0..10 {
        let seen = ctx.send(client, "/", std::slice::from_ref(&cookie), Expect::Pinned, false)?;
        hosts.insert(seen.backend.clone());
        counts.push(seen.count);
        reissued += usize::from(seen.srv.is_some());
    }
    ctx.check(
        hosts.len() == 1
            && hosts.contains(&first.backend)
            && reissued == 0
            && counts.iter().copied().eq(2..=11),
        "the sticky cookie is honoured",
        format!("10 requests with it → {} (count 2..11), re-issued {reissued}×", one(&hosts)),
    );
    // One flipped character: the signature fails, the cookie is ignored and replaced.
    let mut tampered: Vec<char> = srv.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let seen = ctx.send(client, "/", &[h("cookie", format!("{STICKY}={tampered}"))], Expect::New, true)?;
    ctx.check(
        seen.status == 200 && seen.srv.as_ref().is_some_and(|v| *v != tampered && *v != srv),
        "a tampered sticky cookie is ignored and replaced",
        format!("HTTP {}, new cookie: {}", seen.status, seen.srv.is_some()),
    );
    Ok(Some(srv))
}

pub fn check_forged_target(ctx: &Ctx, client: &mut Client, pinned: Option<&str>) -> Result<(), String> {
    let outsider = &ctx.env.outsider.1;
    let user = format!("{}-mallory", ctx.run);
    let mut cases: Vec<(Vec<(String, String)>, Expect)> = vec![
        (vec![h(TARGET_HEADER, outsider), h("x-user-id", &user)], Expect::Hashed),
        (vec![h("X-Gateway-Destination-Endpoint", outsider), h("x-user-id", &user)], Expect::Hashed),
        (vec![h(TARGET_HEADER, format!("{outsider},{outsider}")), h("x-user-id", &user)], Expect::Hashed),
        (
            vec![h(TARGET_HEADER, outsider), h(TARGET_HEADER, &ctx.env.nowhere), h("x-user-id", &user)],
            Expect::Hashed,
        ),
        (vec![h(TARGET_HEADER, outsider)], Expect::New),
        (vec![h(TARGET_HEADER, &ctx.env.nowhere)], Expect::New),
    ];
    if let Some(srv) = pinned {
        cases
            .push((vec![h(TARGET_HEADER, outsider), h("cookie", format!("{STICKY}={srv}"))], Expect::Pinned));
    }
    let mut served = HashSet::new();
    let mut bad = Vec::new();
    for (headers, expect) in &cases {
        let seen = ctx.send(client, "/", headers, *expect, false)?;
        if seen.status != 200 || !ctx.configured.contains(&seen.address) {
            bad.push(format!("HTTP {} from {:?} at {:?}", seen.status, seen.backend, seen.address));
        }
        served.insert(seen.backend);
    }
    ctx.check(
        bad.is_empty(),
        "a client-supplied x-gateway-destination-endpoint is replaced, never followed",
        format!("{} forged requests (naming {outsider}, an endpoint of Envoy's cluster but not a filter host), served by {:?}", cases.len(), served),
    );
    check_outsider(ctx, "forged header");
    Ok(())
}

pub fn check_app_error_is_not_a_host_failure(ctx: &Ctx, client: &mut Client) -> Result<(), String> {
    let user = format!("{}-carol", ctx.run);
    let headers = [h("x-user-id", &user)];
    let first = ctx.send(client, "/", &headers, Expect::Hashed, false)?;
    let addr = ctx
        .env
        .backend_addr(&first.backend)
        .ok_or(format!("unknown backend {:?}", first.backend))?
        .to_string();
    http::get(&addr, "/admin/fail", TIMEOUT).map_err(|e| format!("{addr}/admin/fail: {e}"))?;
    let mut answers = Vec::new();
    for _ in 0..5 {
        let seen = ctx.send(client, "/", &headers, Expect::Hashed, false)?;
        answers.push((seen.status, seen.backend));
    }
    http::get(&addr, "/admin/recover", TIMEOUT).map_err(|e| format!("{addr}/admin/recover: {e}"))?;
    let after = ctx.send(client, "/", &headers, Expect::Hashed, false)?;
    let all_503_from_it = answers.iter().all(|(s, b)| *s == 503 && *b == first.backend);
    ctx.check(
        all_503_from_it && after.status == 200 && after.backend == first.backend && after.count == 2,
        "a 503 answered by the application is not a host failure",
        format!(
            "{} failing (/admin/fail): 5 × 503 from it, the session stayed; recovered: HTTP {} from {}, count {}",
            first.backend, after.status, after.backend, after.count
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The state file between the phases
