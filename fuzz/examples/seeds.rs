//! Writes the seed corpora under fuzz/corpus/<target>/seed-*: real cookies, tokens, paths,
//! configs and header blocks (the README's and envoy/*.yaml's), in each target's raw format.
//! Signed values use the crate's own encoder and the demo secret, so they verify.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds
//!
//! Only files named `seed-*` are (re)written; what the fuzzer added to a corpus is left alone.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use session_router::sticky::{self, Claims, CookieKey};
use session_router_fuzz::{NOW, ROUTER_CONFIGS, SECRET, router_config};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    dir
}

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    fs::write(corpus(target).join(format!("seed-{name}")), bytes).expect("write seed");
}

fn cookie(host_tag: [u8; 8], expires_at: u64, refreshed_at: u64) -> String {
    let claims = Claims {
        session_id: *b"0123456789abcdef",
        point: 0x1234_5678_9abc_def0,
        host: host_tag,
        expires_at,
        refreshed_at,
    };
    sticky::encode(&CookieKey::new(SECRET.as_bytes()), &claims)
}

fn jwt(payload: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode([0x5a; 32])
    )
}

fn main() {
    let cfg = router_config(0);
    let tag = |i: usize| cfg.hosts[i].tag.expect("sticky config has tags");
    let valid = cookie(tag(1), NOW + 3600, NOW);
    let expired = cookie(tag(0), NOW - 1, NOW - 3601);
    let idle = cookie(tag(2), NOW + 80_000, NOW - 700);
    let foreign = sticky::encode(
        &CookieKey::new(b"another-secret-entirely-0123456789abcdef"),
        &Claims { session_id: [1; 16], point: 7, host: tag(0), expires_at: NOW + 60, refreshed_at: NOW },
    );
    let mut tampered = valid.clone().into_bytes();
    tampered[40] = if tampered[40] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let unknown_host = cookie([0xee; 8], NOW + 3600, NOW);

    // cookie_header: line 1 the name, then one `cookie` field per line.
    write("cookie_header", "one", format!("srv\nsrv={valid}"));
    write("cookie_header", "among-many", format!("srv\ntheme=dark; srv={valid}; JSESSIONID=0A1B2C3D4E5F"));
    write(
        "cookie_header",
        "h2-split",
        format!("JSESSIONID\ntheme=dark\nJSESSIONID=0A1B2C3D4E5F\nsrv={valid}"),
    );
    write("cookie_header", "quoted", "JSESSIONID\nJSESSIONID=\"abc def\"; a=\"unterminated; b=unopened\"");
    write("cookie_header", "duplicates", "srv\nsrv=a; srv=b\nsrv=a=b=c; Path=/; Secure; HttpOnly");
    write("cookie_header", "prefixes", "__Host-srv\n__host-srv=x; __Host-srv=y;  __Host-srv = z ;");
    write("cookie_header", "empty", "srv\n\n;;;\n=abc\nsrv");
    write("cookie_header", "structured", b"\0\x03srv\x05hello\x01\x00\x00");

    // sticky_cookie: line 1 the value; lines 2-4 now, ttl_seconds, idle_timeout_seconds.
    write("sticky_cookie", "valid", &valid);
    write("sticky_cookie", "expired", &expired);
    write("sticky_cookie", "idle", format!("{idle}\n{NOW}\n86400\n600"));
    write("sticky_cookie", "from-the-future", format!("{}\n{NOW}\n60", cookie(tag(1), NOW + 100_000, NOW)));
    write("sticky_cookie", "foreign-secret", &foreign);
    write("sticky_cookie", "tampered", &tampered);
    write("sticky_cookie", "unknown-host", &unknown_host);
    write("sticky_cookie", "truncated", &valid[..60]);
    write("sticky_cookie", "padded", format!("{valid}="));
    write("sticky_cookie", "standard-alphabet", valid.replace('-', "+").replace('_', "/"));
    write(
        "sticky_cookie",
        "structured",
        b"\0\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11",
    );

    // jwt: line 1 the header value, line 2 the claim, line 3 now.
    let alice = jwt(r#"{"sub":"alice","iss":"https://issuer.example","exp":1900000000}"#);
    write("jwt", "bearer-sub", format!("Bearer {alice}"));
    write("jwt", "scheme-case", format!("bEARER    {alice}  "));
    write("jwt", "expired", format!("Bearer {}", jwt(r#"{"sub":"bob","exp":1600000000}"#)));
    write("jwt", "exp-string", format!("Bearer {}", jwt(r#"{"sub":"bob","exp":"tomorrow"}"#)));
    write("jwt", "duplicate-sub", format!("Bearer {}", jwt(r#"{"sub":"a","sub":"b"}"#)));
    write("jwt", "escaped-duplicate", format!("Bearer {}", jwt(r#"{"sub":"a","s\u0075b":"b"}"#)));
    write("jwt", "sub-number", format!("Bearer {}", jwt(r#"{"sub":12345}"#)));
    write(
        "jwt",
        "tenant-claim",
        format!("Bearer {}\ntenant", jwt(r#"{"sub":"x","tenant":"acme","nested":{"a":[1,2,{"b":null}]}}"#)),
    );
    write("jwt", "padded-payload", format!("Bearer e30.{}.sig", URL_SAFE.encode(r#"{"sub":"carol"}"#)));
    write("jwt", "jwe-five-segments", "Bearer a.b.c.d.e");
    write("jwt", "not-json", format!("Bearer x.{}.y", URL_SAFE_NO_PAD.encode("[1,2,3]")));
    write(
        "jwt",
        "float-exp",
        format!("Bearer {}\nsub\n1700000000", jwt(r#"{"sub":"d","exp":1700000000.5}"#)),
    );
    write("jwt", "structured", b"\0\x03sub\x01\x00\x05alice");

    // query: line 1 the :path, line 2 the parameter name.
    write("query", "plain", "/?sid=abc123");
    write("query", "among-others", "/shop/cart?x=1&sid=a%20b+c&sid=second#sid=frag");
    write("query", "encoded-name", "/?s%69d=v&sid=w");
    write("query", "utf8", "/?sid=%E2%82%AC\nsid");
    write("query", "malformed", "/?sid=%zz&sid=%4");
    write("query", "bare", "/login?sid\nsid");
    write("query", "fragment-first", "/#x?sid=1");
    write("query", "structured", b"\0\x02/a\x03sid\x03abc");

    // config: the JSON documents of README.md and envoy/*.yaml (and the tests' variants).
    write(
        "config",
        "readme",
        r#"{
  "hosts": [
    {"address": "10.0.0.11:8080", "weight": 1},
    {"address": "10.0.0.12:8080", "weight": 2, "id": "backend-b"}
  ],
  "sources": [
    {"type": "cookie", "name": "JSESSIONID"},
    {"type": "jwt", "claim": "sub"},
    {"type": "header", "name": "x-user-id"},
    {"type": "query", "name": "sid"},
    {"type": "source_ip"}
  ],
  "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret_env": "SESSION_ROUTER_SECRET"},
  "target": {"header": "x-gateway-destination-endpoint", "encoding": "plain", "fallbacks": 2}
}"#,
    );
    write(
        "config",
        "readme-health",
        r#"{"hosts":[{"address":"10.0.0.11:8080"},{"address":"10.0.0.12:8080","drain":true},{"address":"10.0.0.13:8080"}],
"sources":[{"type":"header","name":"x-user-id"}],
"target":{"header":"x-gateway-destination-endpoint","fallbacks":2},
"health": {
  "passive": {"consecutive_failures": 3, "ejection_seconds": 10, "max_ejection_seconds": 300},
  "active": {"cluster": "backends", "path": "/healthz", "interval_ms": 1000, "timeout_ms": 500,
             "unhealthy_threshold": 2, "healthy_threshold": 2}
}}"#,
    );
    for (i, json) in ROUTER_CONFIGS.iter().enumerate() {
        write("config", &format!("router-{i}"), json);
    }
    write(
        "config",
        "error-address",
        r#"{"hosts":[{"address":"10.0.0.1:80"},{"address":"10.0.0.2:80"},{"address":"10.0.0"}],"sources":[{"type":"source_ip"}],"target":{"header":"x-envoy-original-dst-host"}}"#,
    );
    write(
        "config",
        "error-secret",
        r#"{"hosts":[{"address":"10.0.0.1:80"}],"sticky_cookie":{"name":"srv","ttl_seconds":60,"secret":"too-short"},"target":{"header":"x-envoy-original-dst-host"}}"#,
    );
    write(
        "config",
        "error-typo",
        r#"{"hosts":[{"address":"10.0.0.1:80","wieght":2}],"sources":[{"type":"source_ip"}],"target":{"header":"x-envoy-original-dst-host"}}"#,
    );
    write(
        "config",
        "error-trailing",
        r#"{"hosts":[{"address":"10.0.0.1:80"}],"sources":[{"type":"source_ip"}],"target":{"header":"x"}} {}"#,
    );
    write("config", "structured", b"\0\x02\x00\x00\x01\x00\x02\x01\x01\x00\x00\x01\x00");

    // router: a header block; @config/@source/@down/@now are the test's own knobs.
    write(
        "router",
        "new-visitor",
        ":path: /\n:authority: shop.example\nuser-agent: curl/8.5\n@source: 203.0.113.7:51234",
    );
    write(
        "router",
        "returning",
        format!(":path: /cart\ncookie: theme=dark; srv={valid}\n@source: 203.0.113.7:51234"),
    );
    write("router", "returning-host-down", format!(":path: /cart\ncookie: srv={valid}\n@down: 1"));
    write("router", "tampered", format!(":path: /\ncookie: srv={tampered}\nx-user-id: alice"));
    write("router", "expired", format!(":path: /\ncookie: srv={expired}; JSESSIONID=0A1B2C"));
    write("router", "unknown-host", format!(":path: /\ncookie: srv={unknown_host}"));
    write("router", "jwt", format!(":path: /\nauthorization: Bearer {alice}\nx-user-id: bob"));
    write("router", "header", ":path: /\nx-user-id: alice\nx-user-id: alice");
    write(
        "router",
        "conflicting-header",
        ":path: /\nx-user-id: alice\nx-user-id: mallory\n@source: [2001:db8::7]:443",
    );
    write("router", "query", ":path: /search?q=x&sid=a%20b\n@config: 1");
    write(
        "router",
        "forged-target",
        ":path: /\nx-gateway-destination-endpoint: 169.254.169.254:80\nx-envoy-original-dst-host: 10.9.9.9:22\nx-user-id: eve",
    );
    write(
        "router",
        "h2-split-cookies",
        format!(":path: /\ncookie: a=1\ncookie: srv={valid}\ncookie: JSESSIONID=x"),
    );
    write(
        "router",
        "jwt-custom-header",
        format!(":path: /?s+id=v\nx-token: JWT {}\n@config: 1\n@down: 0,2", jwt(r#"{"tenant":"acme"}"#)),
    );
    write("router", "all-down", ":path: /\nx-user-id: alice\n@down: 0,1,2");
    write(
        "router",
        "idle-refresh",
        format!(
            ":path: /\ncookie: __Host-srv={}\n@config: 1\n@now: {}",
            cookie(router_config(1).hosts[0].tag.expect("tag"), NOW + 80_000, NOW - 200),
            NOW
        ),
    );
    write("router", "source-ip-v6", "@config: 5\n@source: [::ffff:127.0.0.1]:443");
    write("router", "structured", b"\0\x00\x02\x00\x05alice");

    // health_table: the shared-data table as workers write it.
    write("health_table", "failing", "10.0.0.11:8080\t2\t0\t0\t0\t0\t0\t0\n");
    write("health_table", "ejected", "h0\t0\t1700000010000\t1\t0\t0\t0\t0\nh3\t1\t0\t0\t0\t0\t0\t0\n");
    write("health_table", "recovered", "h1\t0\t1700000005000\t2\t1\t0\t0\t0\n");
    write("health_table", "probe-down", "h2\t0\t0\t0\t0\t2\t1\t1\nh0\t0\t0\t0\t0\t1\t0\t0\n");
    write(
        "health_table",
        "all-down",
        "h0\t0\t99999999999999\t1\t0\t0\t0\t0\nh1\t0\t0\t0\t0\t3\t0\t1\nh2\t0\t0\t0\t0\t3\t0\t1\n",
    );
    write(
        "health_table",
        "corrupt",
        "h0\t1\t2\nh1\tx\t0\t0\t0\t0\t0\t0\n\t1\t0\t0\t0\t0\t0\t0\nh2\t1\t0\t0\t0\t0\t0\t0\textra\n",
    );
    write(
        "health_table",
        "structured",
        b"\0\x00\x05\x02\x0a\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    );

    // ring: `id <TAB> points` per host, `key <k>` per session key.
    write(
        "ring",
        "golden",
        "10.0.0.11:8080\t256\n10.0.0.12:8080\t512\n10.0.0.13:8080\t256\nv6-host\t256\nkey alice\nkey bob\nkey carol\nkey user-1",
    );
    write(
        "ring",
        "envoy-golden",
        "backend-a\t256\nbackend-b\t256\nbackend-c\t256\nkey alice\nkey dave\nkey frank",
    );
    write("ring", "one-point-each", "a\nb\nc\nd\ne\nf\ng\nh\nkey x");
    write("ring", "duplicate-ids", "same\t3\nsame\t3\nother\t1\nkey k");
    write("ring", "no-points", "a\t0\nb\t1");
    write("ring", "structured", b"\0\x01\x01a\x05\x01\x01b\x03");

    println!("seeds written under {}", Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").display());
}
