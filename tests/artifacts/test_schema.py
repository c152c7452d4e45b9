"""schema/session-router.schema.json: a valid draft 2020-12 schema, every example config the
repository ships validates against it, and the filter accepts exactly what the schema accepts.

The last point is checked on a table of good and bad configs: for each, the schema's verdict is
compared with the real filter's (the release .wasm in `envoy --mode validate`). Where JSON Schema
cannot express a rule of the filter (or the schema is deliberately stricter), the case says so in
`diverge`, and the test then requires the two verdicts to *differ*: if the filter or the schema
changes, the table has to be updated rather than silently going stale.
"""

import copy
import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from dataclasses import field as dc_field

import jsonschema
import pytest
from artifacts_support import (
    TEST_SECRET,
    Example,
    envoy_examples,
    load_schema,
    manifest_examples,
    readme_examples,
    require_filter,
    run_filter,
    run_filter_many,
    schema_errors,
)

# ---- the table ----------------------------------------------------------------------------------

# Environment the filter sees in the table runs (Envoy vm_config.environment_variables.key_values).
TABLE_ENV = {"SESSION_ROUTER_SECRET": TEST_SECRET, "SHORT_SECRET": "only-20-bytes-long!!"}
SECRET = "0123456789abcdef0123456789abcdef"  # exactly 32 bytes


def base(**top):
    """A minimal valid config; keyword arguments replace (or, with None, remove) top-level keys."""
    config = {
        "hosts": [{"address": "10.0.0.1:8080"}, {"address": "10.0.0.2:8080"}],
        "sources": [{"type": "header", "name": "x-user-id"}],
        "target": {"header": "x-gateway-destination-endpoint"},
    }
    for key, value in top.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def sticky(**fields):
    cookie = {"name": "srv", "ttl_seconds": 3600, "secret": SECRET}
    cookie.update(fields)
    return {k: v for k, v in cookie.items() if v is not None}


def hosts(*addresses, **extra):
    return [{"address": a, **extra} for a in addresses]


def target(**fields):
    return {"header": "x-gateway-destination-endpoint", **fields}


def one_host(address):
    return base(hosts=[{"address": address}])


@dataclass
class Case:
    id: str
    config: object  # a dict, or the JSON text itself (str) for cases about the text
    ok: bool  # the filter's verdict
    field: str | None = None  # for ok=False: the field the filter's error names
    diverge: str | None = None  # why the schema's verdict is the opposite of the filter's
    env: dict = dc_field(default_factory=lambda: dict(TABLE_ENV))

    def text(self):
        return self.config if isinstance(self.config, str) else json.dumps(self.config)

    def value(self):
        return json.loads(self.config) if isinstance(self.config, str) else self.config


README_EXAMPLE = {
    "hosts": [
        {"address": "10.0.0.11:8080", "weight": 1},
        {"address": "10.0.0.12:8080", "weight": 2, "id": "backend-b"},
    ],
    "sources": [
        {"type": "cookie", "name": "JSESSIONID"},
        {"type": "jwt", "claim": "sub"},
        {"type": "header", "name": "x-user-id"},
        {"type": "query", "name": "sid"},
        {"type": "source_ip"},
    ],
    "sticky_cookie": {"name": "srv", "ttl_seconds": 3600, "secret_env": "SESSION_ROUTER_SECRET"},
    "target": {"header": "x-gateway-destination-endpoint", "encoding": "plain", "fallbacks": 2},
}

FULL_HEALTH = {
    "passive": {"consecutive_failures": 1000, "ejection_seconds": 86400, "max_ejection_seconds": 86400},
    "active": {
        "cluster": "backends", "path": "/healthz?full=1", "authority": "probe.internal",
        "interval_ms": 100, "timeout_ms": 100, "unhealthy_threshold": 100, "healthy_threshold": 1,
    },
}

SCHEMA_CANNOT = "JSON Schema cannot express this rule"
RUNTIME = "depends on the proxy's environment, not on the document"
BYTES = "the filter counts UTF-8 bytes, JSON Schema counts characters"
DUP_KEYS = "duplicate keys vanish when the JSON is parsed; the filter's parser rejects them"
LENIENT = "filter leniency, not in the README contract; the schema is deliberately stricter"

CASES = [
    # ---- accepted by the filter ----
    Case("minimal", base(), True),
    Case("sticky-cookie-without-sources", base(sources=None, sticky_cookie=sticky()), True),
    Case("readme-example", README_EXAMPLE, True),
    Case("every-source-every-field", base(sources=[
        {"type": "cookie", "name": "__Host-sid"},
        {"type": "jwt", "claim": "https://example.com/uid", "header": "X-Token", "prefix": "Token "},
        {"type": "jwt"},
        {"type": "header", "name": "X-Forwarded-User"},
        {"type": "query", "name": "session id\t"},
        {"type": "source_ip"},
    ]), True),
    Case("ipv6-and-mapped-addresses", base(hosts=hosts(
        "[2001:db8::1]:8080", "[::ffff:10.0.0.1]:80", "[::1]:1", "[1:2:3:4:5:6:7::]:65535",
        "[FE80::A:b:C:d]:443")), True),
    Case("port-leading-zeros-and-broadcast", base(hosts=hosts("10.0.0.1:0080", "255.255.255.255:65535")), True),
    Case("weights-ids-drain", base(hosts=[
        {"address": "10.0.0.1:80", "weight": 1000, "id": "backend-ü"},
        {"address": "10.0.0.2:80", "weight": 1, "id": "b" * 256},
        {"address": "10.0.0.3:80", "drain": True},
        {"address": "10.0.0.4:80", "drain": False},
    ]), True),
    Case("ring-exactly-4m-points", base(hosts=[{"address": "10.0.0.1:80", "weight": 1000}], vnodes_per_weight=4000), True),
    Case("10000-hosts", base(hosts=[{"address": f"10.{i // 250}.{i % 250}.1:80"} for i in range(10000)], vnodes_per_weight=1), True),
    Case("ttl-max-idle-equal", base(sticky_cookie=sticky(ttl_seconds=34560000, idle_timeout_seconds=34560000)), True),
    Case("host-prefix-cookie", base(sticky_cookie=sticky(name="__Host-srv", path="/", same_site="Strict")), True),
    Case("secure-prefix-with-domain", base(sticky_cookie=sticky(name="__Secure-srv", domain="example.com", path="/app")), True),
    Case("samesite-none-secure", base(sticky_cookie=sticky(same_site="None", secure=True, http_only=False)), True),
    Case("secret-env", base(sticky_cookie=sticky(secret=None, secret_env="SESSION_ROUTER_SECRET")), True),
    Case("fallbacks-16", base(target=target(encoding="plain", fallbacks=16)), True),
    Case("base64-stateful-header", base(target={"header": "X-Session-Router-Host", "encoding": "base64", "fallbacks": 0}), True),
    Case("original-dst-no-fallbacks", base(target={"header": "x-envoy-original-dst-host"}), True),
    Case("full-health", base(health=FULL_HEALTH), True),
    Case("health-empty-and-defaults", base(health={"active": {"cluster": "c", "interval_ms": 500}}), True),
    Case("vnodes-bounds", base(vnodes_per_weight=4096), True),
    Case("placement-ring", base(placement={"algorithm": "ring"}, vnodes_per_weight=64), True),
    Case("placement-rendezvous", base(placement={"algorithm": "rendezvous"}), True),
    Case("discovery-envoy-admin", base(discovery={"type": "envoy_admin", "cluster": "envoy_admin", "target_cluster": "outbound|8080||backend.shop.svc.cluster.local"}), True),
    Case("discovery-json-consul", base(discovery={"type": "json", "cluster": "consul", "path": "/v1/health/service/web?passing", "format": "consul", "authority": "consul.service", "interval_ms": 100}), True),
    Case("bounded-load", base(bounded_load={"factor": 1.25}), True),
    Case("bounded-load-bounds", base(bounded_load={"factor": 1.001, "spill_unpinned_keys": True}), True),
    Case("bounded-load-max", base(bounded_load={"factor": 10}), True),
    # ---- rejected by the filter, and by the schema ----
    Case("not-an-object", [], False, "config"),
    Case("unknown-top-level-field", base(stickycookie=sticky()), False, "stickycookie"),
    Case("missing-target", base(target=None), False, "config"),
    Case("missing-hosts", base(hosts=None), False, "config"),
    Case("hosts-empty", base(hosts=[]), False, "hosts"),
    Case("hosts-10001", base(hosts=[{"address": f"10.{i // 250}.{i % 250}.1:80"} for i in range(10001)], vnodes_per_weight=1), False, "hosts"),
        Case("host-unknown-field", base(hosts=[{"address": "10.0.0.1:80", "wieght": 2}]), False, "hosts[0].wieght"),
    Case("host-name-not-ip", one_host("backend:8080"), False, "hosts[0].address"),
    Case("address-without-port", one_host("10.0.0.1"), False, "hosts[0].address"),
    Case("ipv4-leading-zero-octet", one_host("010.0.0.1:80"), False, "hosts[0].address"),
    Case("ipv4-three-octets", one_host("10.0.0:80"), False, "hosts[0].address"),
    Case("port-zero", one_host("10.0.0.1:0"), False, "hosts[0].address"),
    Case("port-65536", one_host("10.0.0.1:65536"), False, "hosts[0].address"),
    Case("port-plus-sign", one_host("10.0.0.1:+80"), False, "hosts[0].address"),
    Case("unspecified-ipv4", one_host("0.0.0.0:80"), False, "hosts[0].address"),
    Case("unspecified-ipv6", one_host("[::]:80"), False, "hosts[0].address"),
    Case("unspecified-ipv6-v4-form", one_host("[::0.0.0.0]:80"), False, "hosts[0].address"),
    Case("multicast-ipv4", one_host("239.255.0.1:80"), False, "hosts[0].address"),
    Case("multicast-ipv6", one_host("[ff02::1]:80"), False, "hosts[0].address"),
    Case("ipv6-without-brackets", one_host("2001:db8::1:80"), False, "hosts[0].address"),
    Case("ipv6-nine-groups", one_host("[1:2:3:4:5:6:7::8]:80"), False, "hosts[0].address"),
    Case("address-leading-space", one_host(" 10.0.0.1:80"), False, "hosts[0].address"),
    Case("address-trailing-newline", one_host("10.0.0.1:80\n"), False, "hosts[0].address"),
    Case("weight-zero", base(hosts=[{"address": "10.0.0.1:80", "weight": 0}]), False, "hosts[0].weight"),
    Case("weight-1001", base(hosts=[{"address": "10.0.0.1:80", "weight": 1001}]), False, "hosts[0].weight"),
    Case("weight-string", base(hosts=[{"address": "10.0.0.1:80", "weight": "2"}]), False, "hosts[0].weight"),
    Case("id-blank", base(hosts=[{"address": "10.0.0.1:80", "id": " \t "}]), False, "hosts[0].id"),
    Case("id-control-char", base(hosts=[{"address": "10.0.0.1:80", "id": "a\u0085b"}]), False, "hosts[0].id"),
    Case("id-257-chars", base(hosts=[{"address": "10.0.0.1:80", "id": "b" * 257}]), False, "hosts[0].id"),
    Case("every-host-draining", base(hosts=hosts("10.0.0.1:80", "10.0.0.2:80", drain=True)), False, "hosts"),
    Case("source-unknown-type", base(sources=[{"type": "path"}]), False, "sources[0].type"),
    Case("source-cookie-without-name", base(sources=[{"type": "cookie"}]), False, "sources[0]"),
    Case("source-cookie-bad-name", base(sources=[{"type": "cookie", "name": "a b"}]), False, "sources[0].name"),
    Case("source-header-cookie", base(sources=[{"type": "header", "name": "Cookie"}]), False, "sources[0].name"),
    Case("source-header-host", base(sources=[{"type": "header", "name": "HOST"}]), False, "sources[0].name"),
    Case("source-header-trailing-newline", base(sources=[{"type": "header", "name": "x-user\n"}]), False, "sources[0].name"),
    Case("source-ip-extra-field", base(sources=[{"type": "source_ip", "name": "x"}]), False, "sources[0]"),
    Case("jwt-empty-claim", base(sources=[{"type": "jwt", "claim": ""}]), False, "sources[0].claim"),
    Case("jwt-prefix-65", base(sources=[{"type": "jwt", "prefix": "p" * 65}]), False, "sources[0].prefix"),
    Case("jwt-prefix-control", base(sources=[{"type": "jwt", "prefix": "Bearer\n"}]), False, "sources[0].prefix"),
    Case("query-name-257", base(sources=[{"type": "query", "name": "q" * 257}]), False, "sources[0].name"),
    Case("no-sources-no-cookie", base(sources=[]), False, "sources"),
    Case("sticky-without-ttl", base(sticky_cookie=sticky(ttl_seconds=None)), False, "sticky_cookie"),
    Case("ttl-zero", base(sticky_cookie=sticky(ttl_seconds=0)), False, "sticky_cookie.ttl_seconds"),
    Case("ttl-over-400-days", base(sticky_cookie=sticky(ttl_seconds=34560001)), False, "sticky_cookie.ttl_seconds"),
    Case("idle-zero", base(sticky_cookie=sticky(idle_timeout_seconds=0)), False, "sticky_cookie.idle_timeout_seconds"),
    Case("secret-31-bytes", base(sticky_cookie=sticky(secret="x" * 31)), False, "sticky_cookie.secret"),
    Case("secret-and-secret-env", base(sticky_cookie=sticky(secret_env="SESSION_ROUTER_SECRET")), False, "sticky_cookie"),
    Case("no-secret", base(sticky_cookie=sticky(secret=None)), False, "sticky_cookie"),
    Case("host-prefix-with-domain", base(sticky_cookie=sticky(name="__Host-srv", domain="example.com")), False, "sticky_cookie.name"),
    Case("host-prefix-with-path", base(sticky_cookie=sticky(name="__Host-srv", path="/app")), False, "sticky_cookie.name"),
    Case("host-prefix-insecure", base(sticky_cookie=sticky(name="__Host-srv", secure=False)), False, "sticky_cookie.name"),
    Case("secure-prefix-insecure", base(sticky_cookie=sticky(name="__Secure-srv", secure=False)), False, "sticky_cookie.name"),
    Case("samesite-none-insecure", base(sticky_cookie=sticky(same_site="None", secure=False)), False, "sticky_cookie.same_site"),
    Case("samesite-lowercase", base(sticky_cookie=sticky(same_site="lax")), False, "sticky_cookie.same_site"),
    Case("cookie-path-relative", base(sticky_cookie=sticky(path="app")), False, "sticky_cookie.path"),
    Case("cookie-path-semicolon", base(sticky_cookie=sticky(path="/a;b")), False, "sticky_cookie.path"),
    Case("cookie-domain-space", base(sticky_cookie=sticky(domain="exa mple.com")), False, "sticky_cookie.domain"),
    Case("cookie-name-empty", base(sticky_cookie=sticky(name="")), False, "sticky_cookie.name"),
    Case("target-header-empty", base(target={"header": ""}), False, "target.header"),
    Case("target-header-content-length", base(target={"header": "Content-Length"}), False, "target.header"),
    Case("target-missing-header", base(target={"encoding": "plain"}), False, "target"),
    Case("encoding-hex", base(target=target(encoding="hex")), False, "target.encoding"),
    Case("fallbacks-17", base(target=target(fallbacks=17)), False, "target.fallbacks"),
    Case("fallbacks-negative", base(target=target(fallbacks=-1)), False, "target.fallbacks"),
    Case("fallbacks-with-base64", base(target=target(encoding="base64", fallbacks=1)), False, "target.fallbacks"),
    Case("fallbacks-with-original-dst", base(target={"header": "X-Envoy-Original-Dst-Host", "fallbacks": 1}), False, "target.fallbacks"),
    Case("vnodes-zero", base(vnodes_per_weight=0), False, "vnodes_per_weight"),
    Case("vnodes-4097", base(vnodes_per_weight=4097), False, "vnodes_per_weight"),
    Case("bounded-load-factor-1", base(bounded_load={"factor": 1}), False, "bounded_load.factor"),
    Case("bounded-load-factor-just-above-1", base(bounded_load={"factor": 1.0009}), False, "bounded_load.factor"),
    Case("bounded-load-factor-over-10", base(bounded_load={"factor": 10.01}), False, "bounded_load.factor"),
    Case("bounded-load-no-factor", base(bounded_load={}), False, "bounded_load"),
    Case("bounded-load-unknown-field", base(bounded_load={"factor": 1.5, "facter": 2}), False, "bounded_load.facter"),
    Case("placement-unknown-algorithm", base(placement={"algorithm": "maglev"}), False, "placement.algorithm"),
    Case("placement-unknown-field", base(placement={"algorithm": "ring", "slots": 3}), False, "placement.slots"),
    Case("placement-without-algorithm", base(placement={}), False, "placement"),
    Case("rendezvous-with-vnodes", base(placement={"algorithm": "rendezvous"}, vnodes_per_weight=64), False, "vnodes_per_weight"),
    Case("passive-zero-failures", base(health={"passive": {"consecutive_failures": 0, "ejection_seconds": 10}}), False, "health.passive.consecutive_failures"),
    Case("passive-ejection-over-a-day", base(health={"passive": {"consecutive_failures": 3, "ejection_seconds": 86401}}), False, "health.passive.ejection_seconds"),
    Case("active-probe-header", base(health={"active": {"cluster": "probes", "header": "x-envoy-original-dst-host"}}), True),
    Case("active-probe-header-bad", base(health={"active": {"cluster": "probes", "header": "bad header"}}), False, "health.active.header"),
    Case("passive-eject-on-all", base(health={"passive": {"consecutive_failures": 3, "ejection_seconds": 10, "eject_on": ["connect_failure", "reset", "overflow", "timeout", "5xx", "fallback"]}}), True),
    Case("passive-eject-on-empty", base(health={"passive": {"consecutive_failures": 3, "ejection_seconds": 10, "eject_on": []}}), False, "health.passive.eject_on"),
    Case("passive-eject-on-unknown", base(health={"passive": {"consecutive_failures": 3, "ejection_seconds": 10, "eject_on": ["reset", "slow"]}}), False, "health.passive.eject_on[1]"),
    Case("passive-eject-on-twice", base(health={"passive": {"consecutive_failures": 3, "ejection_seconds": 10, "eject_on": ["reset", "reset"]}}), False, "health.passive.eject_on[1]"),
    Case("active-without-cluster", base(health={"active": {"path": "/healthz"}}), False, "health.active"),
    Case("active-interval-99", base(health={"active": {"cluster": "c", "interval_ms": 99}}), False, "health.active.interval_ms"),
    Case("active-timeout-zero", base(health={"active": {"cluster": "c", "timeout_ms": 0}}), False, "health.active.timeout_ms"),
    Case("active-timeout-over-default-interval", base(health={"active": {"cluster": "c", "timeout_ms": 1001}}), False, "health.active.timeout_ms"),
    Case("active-interval-under-default-timeout", base(health={"active": {"cluster": "c", "interval_ms": 200}}), False, "health.active.timeout_ms"),
    Case("active-threshold-101", base(health={"active": {"cluster": "c", "healthy_threshold": 101}}), False, "health.active.healthy_threshold"),
    Case("active-path-space", base(health={"active": {"cluster": "c", "path": "/a b"}}), False, "health.active.path"),
    Case("health-unknown-field", base(health={"pasive": {}}), False, "health.pasive"),
    Case("host-prefix-any-case-with-domain", base(sticky_cookie=sticky(name="__host-srv", domain="example.com")), False, "sticky_cookie.name"),
    Case("secure-prefix-any-case-insecure", base(sticky_cookie=sticky(name="__SECURE-srv", secure=False)), False, "sticky_cookie.name"),
    Case("idle-three", base(sticky_cookie=sticky(idle_timeout_seconds=3)), False, "sticky_cookie.idle_timeout_seconds"),
    Case("idle-four", base(sticky_cookie=sticky(idle_timeout_seconds=4)), True),
    Case("discovery-seed-drain", base(hosts=[{"address": "10.0.0.1:8080", "drain": True}, {"address": "10.0.0.2:8080"}], discovery={"type": "envoy_admin", "cluster": "envoy_admin", "target_cluster": "b"}), False, "hosts[0].drain", diverge=SCHEMA_CANNOT),
    Case("discovery-seed-weight", base(hosts=[{"address": "10.0.0.1:8080", "weight": 2}], discovery={"type": "envoy_admin", "cluster": "envoy_admin", "target_cluster": "b"}), False, "hosts[0].weight", diverge=SCHEMA_CANNOT),
    Case("discovery-unknown-type", base(discovery={"type": "dns", "cluster": "c"}), False, "discovery.type"),
    Case("discovery-without-target-cluster", base(discovery={"type": "envoy_admin", "cluster": "envoy_admin"}), False, "discovery"),
    Case("discovery-empty-target-cluster", base(discovery={"type": "envoy_admin", "cluster": "envoy_admin", "target_cluster": ""}), False, "discovery.target_cluster"),
    Case("discovery-empty-cluster", base(discovery={"type": "envoy_admin", "cluster": "", "target_cluster": "b"}), False, "discovery.cluster"),
    Case("discovery-interval-99", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "interval_ms": 99}), False, "discovery.interval_ms"),
    Case("discovery-json-format-eureka", base(discovery={"type": "json", "cluster": "c", "path": "/v1", "format": "eureka"}), False, "discovery"),
    Case("discovery-json-relative-path", base(discovery={"type": "json", "cluster": "c", "path": "v1/health", "format": "consul"}), False, "discovery.path"),
    Case("discovery-envoy-admin-with-path", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "path": "/clusters"}), False, "discovery"),
    Case("secure-not-boolean", base(sticky_cookie=sticky(secure="true")), False, "sticky_cookie.secure"),
    # Istio's pluginConfig is a protobuf Struct: its numbers are doubles. Integral ones are integers
    # to both the schema and the filter; a fraction is an error to both.
    Case("weight-written-1.0", '{"hosts":[{"address":"10.0.0.1:80","weight":1.0}],"sources":[{"type":"source_ip"}],"target":{"header":"x-a"}}', True),
    Case("ttl-written-3.6e3", '{"hosts":[{"address":"10.0.0.1:80"}],"sticky_cookie":{"name":"s","ttl_seconds":3.6e3,"secret":"%s"},"target":{"header":"x-a"}}' % SECRET, True),
    Case("weight-written-1.5", '{"hosts":[{"address":"10.0.0.1:80","weight":1.5}],"sources":[{"type":"source_ip"}],"target":{"header":"x-a"}}', False, "hosts[0].weight"),
    # ---- issue 13: discovery allow-list, secret rotation, JWT leeway ----
    Case("discovery-allow-list", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "allowed_cidrs": ["10.0.0.0/8", "fd00::/8", "127.0.0.1"], "denied_ports": []}), True),
    Case("discovery-original-dst-with-allow-list", base(target={"header": "x-envoy-original-dst-host"}, discovery={"type": "json", "cluster": "c", "path": "/v1", "format": "consul", "allowed_cidrs": ["10.1.0.0/16"], "denied_ports": [9901, 15000, 15020]}), True),
    Case("discovery-original-dst-without-allow-list", base(target={"header": "x-envoy-original-dst-host"}, discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b"}), False, "discovery.allowed_cidrs"),
    Case("discovery-empty-allow-list", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "allowed_cidrs": []}), False, "discovery.allowed_cidrs"),
    Case("discovery-allow-list-not-a-range", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "allowed_cidrs": ["example.com/8"]}), False, "discovery.allowed_cidrs[0]"),
    Case("discovery-denied-port-zero", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "denied_ports": [0]}), False, "discovery.denied_ports[0]"),
    Case("discovery-denied-port-65536", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "denied_ports": [65536]}), False, "discovery"),
    Case("verify-secrets", base(sticky_cookie=sticky(verify_secrets=[{"secret": "f" * 32}, {"secret_env": "SESSION_ROUTER_SECRET"}])), True),
    Case("verify-secret-short", base(sticky_cookie=sticky(verify_secrets=[{"secret": "short"}])), False, "sticky_cookie.verify_secrets[0].secret"),
    Case("verify-secret-neither", base(sticky_cookie=sticky(verify_secrets=[{}])), False, "sticky_cookie.verify_secrets[0]"),
    Case("verify-secret-both", base(sticky_cookie=sticky(verify_secrets=[{"secret": "f" * 32, "secret_env": "SESSION_ROUTER_SECRET"}])), False, "sticky_cookie.verify_secrets[0]"),
    Case("verify-secrets-five", base(sticky_cookie=sticky(verify_secrets=[{"secret": str(i) * 32} for i in range(5)])), False, "sticky_cookie.verify_secrets"),
    Case("jwt-leeway", base(sources=[{"type": "jwt", "leeway_seconds": 0}, {"type": "jwt", "leeway_seconds": 3600}]), True),
    Case("jwt-leeway-over-an-hour", base(sources=[{"type": "jwt", "leeway_seconds": 3601}]), False, "sources[0].leeway_seconds"),
    # ---- expected divergences: the filter rejects, the schema accepts ----
    Case("discovery-allow-list-host-bits", base(discovery={"type": "envoy_admin", "cluster": "a", "target_cluster": "b", "allowed_cidrs": ["10.0.0.1/8"]}), False, "discovery.allowed_cidrs[0]", diverge=SCHEMA_CANNOT),
    Case("verify-secret-equals-signing-key", base(sticky_cookie=sticky(verify_secrets=[{"secret": SECRET}])), False, "sticky_cookie.verify_secrets[0]", diverge=SCHEMA_CANNOT),
    Case("ipv4-mapped-multicast", one_host("[::ffff:224.0.0.1]:80"), False, "hosts[0].address", diverge=SCHEMA_CANNOT),
    Case("ipv4-mapped-unspecified", one_host("[::ffff:0.0.0.0]:80"), False, "hosts[0].address", diverge=SCHEMA_CANNOT),
    Case("duplicate-identical-hosts", base(hosts=hosts("10.0.0.1:80", "10.0.0.1:80")), False, "hosts[1].address", diverge=SCHEMA_CANNOT),
    Case("duplicate-address-by-port-zeros", base(hosts=hosts("10.0.0.1:80", "10.0.0.1:080")), False, "hosts[1].address", diverge=SCHEMA_CANNOT),
    Case("duplicate-address-ipv4-mapped", base(hosts=hosts("10.0.0.1:80", "[::ffff:10.0.0.1]:80")), False, "hosts[1].address", diverge=SCHEMA_CANNOT),
    Case("duplicate-address-by-ipv6-form", base(hosts=hosts("[::1]:80", "[0:0::1]:80")), False, "hosts[1].address", diverge=SCHEMA_CANNOT),
    Case("duplicate-id", base(hosts=[{"address": "10.0.0.1:80", "id": "a"}, {"address": "10.0.0.2:80", "id": "a"}]), False, "hosts[1].id", diverge=SCHEMA_CANNOT),
    Case("id-equals-other-hosts-address", base(hosts=[{"address": "10.0.0.1:80"}, {"address": "10.0.0.2:80", "id": "10.0.0.1:80"}]), False, "hosts[1].id", diverge=SCHEMA_CANNOT),
    Case("rendezvous-over-65536-weight", base(hosts=[{"address": f"10.0.1.{i + 1}:80", "weight": 1000} for i in range(66)]), False, "hosts", diverge=SCHEMA_CANNOT),
    Case("ring-over-4m-points", base(hosts=[{"address": "10.0.0.1:80", "weight": 1000}], vnodes_per_weight=4001), False, "hosts", diverge=SCHEMA_CANNOT),
    Case("idle-over-ttl", base(sticky_cookie=sticky(ttl_seconds=60, idle_timeout_seconds=61)), False, "sticky_cookie.idle_timeout_seconds", diverge=SCHEMA_CANNOT),
    Case("max-ejection-under-ejection", base(health={"passive": {"consecutive_failures": 3, "ejection_seconds": 600, "max_ejection_seconds": 599}}), False, "health.passive.max_ejection_seconds", diverge=SCHEMA_CANNOT),
    Case("timeout-over-interval", base(health={"active": {"cluster": "c", "interval_ms": 1000, "timeout_ms": 1001}}), False, "health.active.timeout_ms", diverge=SCHEMA_CANNOT),
    Case("secret-env-unset", base(sticky_cookie=sticky(secret=None, secret_env="NOT_SET_ANYWHERE")), False, "sticky_cookie.secret_env", diverge=RUNTIME),
    Case("secret-env-too-short", base(sticky_cookie=sticky(secret=None, secret_env="SHORT_SECRET")), False, "sticky_cookie.secret", diverge=RUNTIME),
    Case("claim-129-two-byte-chars", base(sources=[{"type": "jwt", "claim": "é" * 129}]), False, "sources[0].claim", diverge=BYTES),
    Case("duplicate-key", '{"hosts":[{"address":"10.0.0.1:80"}],"hosts":[{"address":"10.0.0.2:80"}],"sources":[{"type":"source_ip"}],"target":{"header":"x-a"}}', False, "config", diverge=DUP_KEYS),
    # ---- expected divergences: the filter accepts, the schema rejects ----
    Case("secret-16-two-byte-chars", base(sticky_cookie=sticky(secret="é" * 16)), True, diverge=BYTES),
    Case("null-sticky-cookie", {**base(), "sticky_cookie": None}, True, diverge=LENIENT),
    Case("null-weight-and-id", base(hosts=[{"address": "10.0.0.1:80", "weight": None, "id": None}]), True, diverge=LENIENT),
    Case("ipv6-zone-index", one_host("[fe80::1%2]:80"), False, "hosts[0].address"),
]


def test_table_is_big_and_balanced():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert sum(c.ok for c in CASES) >= 15 and sum(not c.ok for c in CASES) >= 15
    assert len(CASES) >= 30
    for c in CASES:
        assert c.ok or c.field, f"{c.id}: a rejected case names the field the filter reports"


@functools.cache
def schema_verdict(case_id: str) -> tuple[str, ...]:
    (case,) = [c for c in CASES if c.id == case_id]
    return tuple(schema_errors(case.value()))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_schema_verdict(case):
    """The schema accepts what the filter accepts, except for the declared divergences."""
    errors = schema_verdict(case.id)
    schema_ok = not errors
    expected = case.ok if case.diverge is None else not case.ok
    assert schema_ok == expected, (
        f"schema {'accepts' if schema_ok else 'rejects'} {case.id!r}"
        + (f" (declared divergence: {case.diverge})" if case.diverge else "")
        + ("\n" + "\n".join(errors) if errors else "")
    )


@pytest.fixture(scope="module")
def filter_verdicts():
    require_filter()
    return run_filter_many({c.id: {"filter_json": c.text(), "key_values": c.env} for c in CASES})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_filter_agrees_with_schema(case, filter_verdicts):
    """The real filter's verdict: as the table says, and equal to the schema's unless declared."""
    verdict = filter_verdicts[case.id]
    schema_ok = not schema_verdict(case.id)
    assert verdict.accepted == case.ok, (
        f"filter {'accepts' if verdict.accepted else 'rejects'} {case.id!r}, table says "
        f"{'accept' if case.ok else 'reject'}; schema {'accepts' if schema_ok else 'rejects'}\n{verdict.log[-2000:]}"
    )
    if not case.ok:
        assert verdict.field == case.field, f"{case.id}: filter rejected {verdict.field}: {verdict.reason}"
    if case.diverge is None:
        assert schema_ok == verdict.accepted
    else:
        assert schema_ok != verdict.accepted, f"{case.id} no longer diverges ({case.diverge}): update the table"


# ---- the schema itself --------------------------------------------------------------------------


def _patterns(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_schema_is_valid_draft_2020_12():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_is_closed_everywhere():
    """additionalProperties: false on every object schema that lists properties."""

    defs = load_schema()["$defs"]

    def closed(node):
        if node.get("additionalProperties") is False:
            return True
        # A discriminated union (sources[]): closed when each of its oneOf branches is.
        branches = [defs[b["$ref"].rsplit("/", 1)[1]] for b in node.get("oneOf", []) if "$ref" in b]
        return bool(branches) and all(b.get("additionalProperties") is False for b in branches)

    def walk(node, path):
        if isinstance(node, dict):
            if "properties" in node and node.get("type") == "object":
                assert closed(node), f"{path} is open"
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(load_schema(), "#")


def test_schema_comment_lists_the_inexpressible_rules():
    comment = load_schema()["$comment"]
    for words in ["same address", "same id", "4,000,000", "idle_timeout_seconds <= ttl_seconds",
                  "max_ejection_seconds >= ejection_seconds", "timeout_ms <= interval_ms",
                  "secret_env", "UTF-8 bytes", "duplicate keys", "null", "zone", "hosts[].drain"]:
        assert words in comment, f"$comment does not mention {words!r}"


def test_patterns_agree_in_python_and_ecma262():
    """Patterns are ECMA-262 (as JSON Schema specifies) and mean the same in Python's `re`."""
    patterns = sorted(set(_patterns(load_schema())))
    for p in patterns:
        re.compile(p)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed: ECMA-262 cross-check skipped")
    samples = [c.value() for c in CASES if "10000" not in c.id and "10001" not in c.id] + [
        "10.0.0.1:80", "10.0.0.1:80\n", "x-user", "x-user\n", "[::1]:80", "a\u0085b", " ", "é" * 3,
        "host", "HOST", "__Host-a", "/a;b", "/a b", "ex.com", "Bearer \t",
    ]
    strings = sorted({s for s in _strings(samples)})
    script = (
        "const fs=require('fs');const [ps,xs]=JSON.parse(fs.readFileSync(0,'utf8'));"
        "process.stdout.write(JSON.stringify(ps.map(p=>{const r=new RegExp(p,'u');return xs.map(x=>r.test(x))})));"
    )
    result = subprocess.run([node, "-e", script], input=json.dumps([patterns, strings]),
                            capture_output=True, text=True, check=True)
    ecma = json.loads(result.stdout)
    for p, row in zip(patterns, ecma):
        compiled = re.compile(p)
        for s, js in zip(strings, row):
            assert bool(compiled.search(s)) == js, f"pattern {p[:60]}... disagrees on {s!r}"


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


# ---- every example config in the repository -----------------------------------------------------

ENVOY_EXAMPLES = envoy_examples()
MANIFEST_EXAMPLES = manifest_examples()
README_EXAMPLES = readme_examples()
ALL_EXAMPLES = ENVOY_EXAMPLES + MANIFEST_EXAMPLES + README_EXAMPLES


def test_examples_were_found():
    assert len(ENVOY_EXAMPLES) >= 3, "envoy/*.yaml: one filter config per target mode"
    assert len(MANIFEST_EXAMPLES) >= 5, "envoy/istio: WasmPlugins and TrafficExtensions"
    assert len(README_EXAMPLES) >= 1, "README.md: the configuration reference example"


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda e: e.where)
def test_example_validates_against_schema(example: Example):
    assert schema_errors(example.config) == []


@pytest.mark.parametrize("example", MANIFEST_EXAMPLES + README_EXAMPLES, ids=lambda e: e.where)
def test_example_is_accepted_by_the_filter(example: Example):
    """Manifests and README examples (envoy/*.yaml are loaded by tests/envoy) through the filter,
    the way Istio hands them over: pluginConfig as JSON, vmConfig.env HOST entries as
    `host_env_keys` read from the proxy's own environment."""
    verdict = run_filter(
        json.dumps(copy.deepcopy(example.config)),
        key_values=dict(example.env_inline) or None,
        host_env_keys=example.env_from_host,
        process_env={name: TEST_SECRET for name in example.env_from_host},
        root_id=example.root_id,
    )
    assert verdict.accepted, f"{example.where}: rejected {verdict.field}: {verdict.reason}"
