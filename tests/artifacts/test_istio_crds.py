"""Istio's CRDs applied to the Istio manifests in envoy/istio.

Every Istio resource validates against Istio's own CRD schema (the openAPIV3Schema of the served
version its apiVersion names, from the CRDs vendored in tests/artifacts/istio-crds), converted to
JSON Schema the way the API server applies it (crds.to_json_schema), and every CEL rule
(`x-kubernetes-validations`) is evaluated by a Python equivalent from RULES — a rule the table does
not know fails the test instead of being skipped. Broken variants are rejected, so the validation
has teeth. (test_envoy_gateway.py cross-checks RULES against cel-python.)
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from datetime import timedelta

import pytest
from artifacts_support import ISTIO_CRD_DIR, ISTIO_KINDS, istio_documents
from crds import cel_rules, crd_validator, load_crds
from crds import crd_errors as _crd_errors
from jsonschema import ValidationError

CRD_DIR = ISTIO_CRD_DIR

# ---- CRD schema -> JSON Schema ------------------------------------------------------------------


def _duration(text: str) -> timedelta:
    """A Go/CEL duration such as 1.5s, 300ms, 1h2m."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    total, number, i = 0.0, "", 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            number += c
            i += 1
            continue
        unit = next((u for u in ("ms", "us", "µs", "ns", "h", "m", "s") if text.startswith(u, i)), None)
        if unit is None or not number:
            raise ValueError(f"not a duration: {text!r}")
        total += float(number) * units[unit]
        number, i = "", i + len(unit)
    if number:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=total)


def _url_scheme_ok(value: str, schemes) -> bool:
    def scheme(u):
        parsed = urllib.parse.urlsplit(u)
        return parsed.scheme if parsed.scheme or parsed.netloc or parsed.path else None

    s = scheme(value)
    if s is not None and "://" in value:
        return s in schemes
    return scheme("http://" + value) in schemes


def _count_has(obj, *names):
    return sum(1 for n in names if n in obj)


# Every CEL rule of the four CRDs (whitespace-normalised) -> a Python predicate on `self`.
RULES = {
    '!self.contains("*")': lambda s: "*" not in s,
    'self.all(key, !key.contains("*"))': lambda s: all("*" not in k for k in s),
    "self.all(key, key.size() != 0)": lambda s: all(len(k) != 0 for k in s),
    "self.size() == 0": lambda s: len(s) == 0,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "selector", "targetRef", "targetRefs") <= 1,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "selector", "targetRefs") <= 1,
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "workloadSelector", "targetRefs") <= 1,
    "(has(self.jwksUri) ? 1 : 0) + (has(self.jwks_uri) ? 1 : 0) + (has(self.jwks) ? 1 : 0) <= 1":
        lambda s: _count_has(s, "jwksUri", "jwks_uri", "jwks") <= 1,
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda s: s.get("valueFrom", "") != "HOST" or "value" not in s,
    "has(self.wasm) != has(self.lua)": lambda s: ("wasm" in s) != ("lua" in s),
    'has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)':
        lambda s: ("waypoint" in s) == (s.get("context") == "WAYPOINT"),
    "0 < self && self <= 65535": lambda s: 0 < s <= 65535,
    "duration(self) >= duration('1ms')": lambda s: _duration(s) >= timedelta(milliseconds=1),
    'url(self).getScheme() in ["http", "https"]': lambda s: urllib.parse.urlsplit(s).scheme in ("http", "https"),
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "file", "oci"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "file", "oci"])':
        lambda s: _url_scheme_ok(s, {"", "http", "https", "file", "oci"}),
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        lambda s: _url_scheme_ok(s, {"", "http", "https", "file", "oci"}),
}


def _cel(validator, rules, instance, schema):
    for rule in rules:
        text = " ".join(rule["rule"].split())
        if text not in RULES:
            yield ValidationError(f"CEL rule not implemented by this test (add it to RULES): {text}")
            continue
        try:
            ok = RULES[text](instance)
        except (TypeError, ValueError, AttributeError) as e:
            ok, rule = False, {**rule, "message": f"{rule.get('message', text)} ({e})"}
        if not ok:
            yield ValidationError(rule.get("message") or f"violates {text}")


CrdValidator = crd_validator(_cel)


def load_istio_crds() -> dict:
    """(apiVersion, kind) -> spec schema, for every served version of every Istio CRD."""
    return load_crds(CRD_DIR)


@pytest.fixture(scope="module")
def crds():
    if not CRD_DIR.is_dir():
        pytest.skip(f"Istio CRDs not found in {CRD_DIR} (set ISTIO_CRDS_DIR)")
    return load_istio_crds()


def crd_errors(crds, doc) -> list[str]:
    return _crd_errors(crds, doc, CrdValidator, CRD_DIR, check_schema=True)


DOCS = istio_documents()
ISTIO_DOCS = [(where, doc) for where, doc in DOCS if doc.get("kind") in ISTIO_KINDS]


def test_every_cel_rule_is_implemented():
    rules = cel_rules(CRD_DIR)
    assert rules, "no CEL rules found: wrong CRD directory?"
    assert rules <= set(RULES), f"unimplemented CEL rules: {rules - set(RULES)}"


@pytest.mark.parametrize("where,doc", ISTIO_DOCS, ids=[w for w, _ in ISTIO_DOCS])
def test_manifest_spec_matches_istio_crd(crds, where, doc):
    assert doc["metadata"].get("name") and doc["metadata"].get("namespace"), where
    assert crd_errors(crds, doc) == []


def _wasmplugin():
    (doc,) = [d for w, d in DOCS if w == "envoy/istio/wasmplugin-gateway.yaml#0"]
    return copy.deepcopy(doc)


def _mutated(base, change):
    doc = copy.deepcopy(base)
    change(doc)
    return doc


NEGATIVE = {
    "unknown-field": lambda d: d["spec"].update(phse="AUTHZ"),
    "bad-enum": lambda d: d["spec"].update(failStrategy="FAIL_CLOSED"),
    "wrong-type": lambda d: d["spec"].update(priority="10"),
    "int32-overflow": lambda d: d["spec"].update(priority=2**31),
    "host-env-with-value": lambda d: d["spec"]["vmConfig"]["env"][0].update(value="inline-secret"),
    "duplicate-env-name": lambda d: d["spec"]["vmConfig"]["env"].append({"name": "SESSION_ROUTER_SECRET"}),
    "selector-and-targetRefs": lambda d: d["spec"].update(targetRefs=[{"kind": "Gateway", "name": "gw"}]),
    "ftp-url": lambda d: d["spec"].update(url="ftp://registry.example.com/x"),
    "wildcard-selector": lambda d: d["spec"]["selector"]["matchLabels"].update(app="*"),
    "unknown-apiVersion": lambda d: d.update(apiVersion="extensions.istio.io/v1"),
}


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_crd_validation_is_not_vacuous(crds, name):
    """Broken variants of a shipped manifest are rejected, so the conversion above has teeth."""
    assert crd_errors(crds, _mutated(_wasmplugin(), NEGATIVE[name])), f"{name} was accepted"


def test_crd_validation_keeps_kubernetes_semantics(crds):
    # nullable priority and unknown fields inside pluginConfig (preserve-unknown-fields) are fine.
    doc = _mutated(_wasmplugin(), lambda d: d["spec"].update(priority=None))
    doc["spec"]["pluginConfig"]["anything"] = {"goes": [1, 2]}
    assert crd_errors(crds, doc) == []
    # The other resources: a few broken variants each.
    by_kind = {d["kind"]: d for _, d in ISTIO_DOCS}
    broken = [
        _mutated(by_kind["TrafficExtension"], lambda d: d["spec"].update(lua={"inlineCode": "x"})),
        _mutated(by_kind["TrafficExtension"], lambda d: d["spec"]["wasm"].update(phase="AUTHZ")),
        _mutated(by_kind["EnvoyFilter"], lambda d: d["spec"]["configPatches"][0]["patch"].update(operation="MERGE_LIST")),
        _mutated(by_kind["RequestAuthentication"],
                 lambda d: d["spec"]["jwtRules"][0]["outputClaimToHeaders"][0].update(header="x jwt sub")),
        _mutated(by_kind["RequestAuthentication"],
                 lambda d: d["spec"]["jwtRules"][0].update(jwksUri="ftp://auth.example.com/jwks")),
    ]
    for doc in broken:
        assert crd_errors(crds, doc), f"accepted: {json.dumps(doc['spec'])[:200]}"
