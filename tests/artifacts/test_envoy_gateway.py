"""The Envoy Gateway manifests in envoy/envoy-gateway.

1. Every Gateway API / Envoy Gateway resource validates against its CRD (the openAPIV3Schema of the
   served version its apiVersion names, from the CRDs vendored in tests/artifacts/envoy-gateway-crds),
   with the API server's semantics: structural defaults applied first, unknown fields rejected
   unless `x-kubernetes-preserve-unknown-fields`, int32/int64 bounds, list-map keys unique (the
   conversion is crds.to_json_schema, shared with the Istio manifests), and every CEL
   rule (`x-kubernetes-validations`) evaluated by cel-python (`celpy`, pinned in tests/requirements.txt)
   with the one Kubernetes CEL library function these CRDs use, `isIP`, added. Transition rules
   (those reading `oldSelf`) only run on updates, so they are listed as skipped, explicitly.
2. Broken variants of the shipped manifests are rejected, including by CEL rules, so the
   validation has teeth.
3. The manifests agree with each other and with the filter: policies target the route, the
   override header is the filter's target header, retries cover the fallbacks, the secret comes
   from the proxy environment through env.hostKeys and the EnvoyProxy.
4. The hand-written CEL table test_istio_crds uses for Istio's CRDs agrees with cel-python on
   every rule the Istio manifests (and their broken variants) meet.

(The filter config inside the EnvoyExtensionPolicy is also checked against the filter's JSON
Schema and by the filter itself in test_schema.py, through artifacts_support.manifest_examples.)
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import urllib.parse
from pathlib import Path

import jsonschema
import pytest
import test_istio_crds
from artifacts_support import ENVOY_GATEWAY_DIR, envoy_gateway_documents
from crds import cel_rules, crd_validator, load_crds
from crds import crd_errors as _crd_errors
from jsonschema import ValidationError

celpy = pytest.importorskip("celpy", reason="pip install -r tests/requirements.txt (cel-python)")
from celpy import celtypes  # noqa: E402

# Envoy Gateway's and Gateway API's CRDs: $ENVOY_GATEWAY_CRDS_DIR, else the copy vendored next to
# these tests (envoy-gateway-crds/README.md says where it came from).
CRD_DIR = Path(os.environ.get("ENVOY_GATEWAY_CRDS_DIR") or Path(__file__).resolve().parent / "envoy-gateway-crds")

# Kinds shipped in envoy/envoy-gateway whose CRD is not vendored: checked for shape only (below).
NOT_VENDORED = {"EnvoyProxy"}


# ---- CEL through cel-python -----------------------------------------------------------------------


def _is_ip(value):
    try:
        ipaddress.ip_address(str(value))
        return celtypes.BoolType(True)
    except ValueError:
        return celtypes.BoolType(False)


_REQUEST_URI = re.compile(r"^(/|[A-Za-z][A-Za-z0-9+.-]*:)[^\s\x00-\x1f\x7f]*$")


def _is_url(value):
    """Kubernetes' isURL: Go's url.ParseRequestURI succeeds (an absolute URI or an absolute path)."""
    return celtypes.BoolType(bool(_REQUEST_URI.match(str(value))))


def _url(value):
    if not _is_url(value):
        raise ValueError(f"URL parse error during conversion from string: {value!r}")
    return celtypes.StringType(str(value))


def _get_scheme(value):
    return celtypes.StringType(urllib.parse.urlsplit(str(value)).scheme)


# Kubernetes' CEL libraries, as far as the vendored CRDs use them: isIP (Gateway API); url, isURL
# and getScheme (Istio's CRDs, for the cross-check with test_istio_crds.RULES below).
CEL_FUNCTIONS = {"isIP": _is_ip, "isURL": _is_url, "url": _url, "getScheme": _get_scheme}
_ENV = celpy.Environment()
_PROGRAMS: dict[str, object] = {}


def is_transition_rule(rule: str) -> bool:
    return "oldSelf" in rule


def cel_program(rule: str):
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule), functions=CEL_FUNCTIONS)
    return _PROGRAMS[rule]


def cel_holds(rule: str, value) -> tuple[bool, str | None]:
    """(verdict, evaluation error). A rule that fails to evaluate fails, as in the API server."""
    try:
        result = cel_program(rule).evaluate({"self": celpy.json_to_cel(value)})
    except (celpy.CELEvalError, ValueError) as e:
        return False, str(e.args[0] if e.args else e)
    if isinstance(result, celpy.CELEvalError):
        return False, str(result.args[0] if result.args else result)
    return bool(result), None


def _cel(validator, rules, instance, schema):
    for rule in rules:
        text = " ".join(rule["rule"].split())
        if is_transition_rule(text):
            continue  # transition rules run on updates only (oldSelf); see SKIPPED below
        ok, error = cel_holds(text, instance)
        if not ok:
            message = rule.get("message") or f"violates {text}"
            yield ValidationError(f"{message} (CEL: {text}{'; ' + error if error else ''})")


CrdValidator = crd_validator(_cel)


def apply_defaults(schema, value):
    """The API server's structural defaulting (before validation): a missing property with a
    `default` gets it, recursively; an integer where the schema says `number` becomes a double
    (CEL compares int and double only after that)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in list(value.items()):
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                value[key] = apply_defaults(sub, item)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def all_cel_rules() -> set[str]:
    return cel_rules(CRD_DIR)


@pytest.fixture(scope="module")
def crds():
    if not CRD_DIR.is_dir():
        pytest.skip(f"Envoy Gateway CRDs not found in {CRD_DIR} (set ENVOY_GATEWAY_CRDS_DIR)")
    return load_crds(CRD_DIR)


def crd_errors(crds, doc) -> list[str]:
    return _crd_errors(crds, doc, CrdValidator, CRD_DIR,
                       prepare=lambda schema, spec: apply_defaults(schema, copy.deepcopy(spec)))


DOCS = envoy_gateway_documents()
VALIDATED = [(w, d) for w, d in DOCS if d.get("kind") not in NOT_VENDORED]


def _one(kind):
    (doc,) = [d for _, d in DOCS if d.get("kind") == kind]
    return copy.deepcopy(doc)


# ---- CEL coverage -------------------------------------------------------------------------------

# Rules not evaluated, and why. Every other rule of every vendored CRD is compiled and evaluated.
SKIPPED = {rule: "transition rule (reads oldSelf): the API server evaluates it on updates only"
           for rule in all_cel_rules() if is_transition_rule(rule)} if CRD_DIR.is_dir() else {}


def test_every_cel_rule_compiles_or_is_listed_as_skipped():
    rules = all_cel_rules()
    assert len(rules) >= 100, f"only {len(rules)} CEL rules found: wrong CRD directory?"
    failed = {}
    for rule in sorted(rules - set(SKIPPED)):
        try:
            cel_program(rule)
        except Exception as e:  # noqa: BLE001 — report every rule cel-python cannot compile
            failed[rule] = f"{type(e).__name__}: {e}"
    assert failed == {}, f"CEL rules cel-python cannot compile (evaluate them or list them in SKIPPED): {failed}"
    assert set(SKIPPED) == {"self == oldSelf"}, f"skipped rules changed: {sorted(SKIPPED)}"
    # The report names what is skipped, so a reader sees the gap.
    print(f"\n{len(rules) - len(SKIPPED)} CEL rules evaluated, {len(SKIPPED)} skipped:")
    for rule, why in sorted(SKIPPED.items()):
        print(f"  skipped: {rule!r}: {why}")


def test_cel_evaluation_matches_kubernetes_semantics():
    """A few rules whose verdicts are known, evaluated the way the validator does."""
    assert cel_holds("self.type == 'Image' ? has(self.image) : !has(self.image)", {"type": "Image", "image": {}})[0]
    assert not cel_holds("self.type == 'Image' ? has(self.image) : !has(self.image)", {"type": "HTTP", "image": {}})[0]
    assert not cel_holds("self.all(f, !f.startsWith('envoy.filters.http'))", ["envoy.filters.http.wasm"])[0]
    assert cel_holds("duration(self) > duration('0s')", "10s")[0]
    assert not cel_holds("duration(self) > duration('0s')", "0s")[0]
    assert cel_holds("isIP(self)", "10.0.0.1")[0] and not cel_holds("isIP(self)", "example.com")[0]
    # A field the rule reads but the object lacks is an evaluation error, i.e. a failure...
    ok, error = cel_holds("self.numerator <= self.denominator", {"numerator": 1})
    assert not ok and error
    # ...which is why defaults are applied first, as the API server does (denominator: 100).
    (btp,) = [k for k in load_crds(CRD_DIR) if k[1] == "BackendTrafficPolicy"]
    spec = {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r"}],
            "circuitBreaker": {"retryBudget": {"percent": {"numerator": 1}}}}
    assert crd_errors(load_crds(CRD_DIR), {"apiVersion": btp[0], "kind": btp[1], "spec": spec}) == []


# ---- the manifests against their CRDs --------------------------------------------------------------


def test_every_manifest_is_known():
    kinds = sorted(d.get("kind") for _, d in DOCS)
    assert kinds == sorted(["GatewayClass", "Gateway", "HTTPRoute", "EnvoyExtensionPolicy",
                            "BackendTrafficPolicy", "EnvoyProxy"]), kinds
    for path in sorted(ENVOY_GATEWAY_DIR.glob("*.yaml")):
        lines = path.read_text().splitlines()
        header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
        assert len(header) >= 5, f"{path.name}: needs a header comment explaining it"


@pytest.mark.parametrize("where,doc", VALIDATED, ids=[w for w, _ in VALIDATED])
def test_manifest_spec_matches_its_crd(crds, where, doc):
    assert doc["metadata"].get("name"), where
    if doc["kind"] != "GatewayClass":  # cluster-scoped
        assert doc["metadata"].get("namespace") == "shop", where
    assert crd_errors(crds, doc) == []


def _mutated(kind, change):
    doc = _one(kind)
    change(doc)
    return doc


def _wasm(d):
    return d["spec"]["wasm"][0]


# name -> (kind, change, a fragment the error must contain: proves *which* check caught it)
NEGATIVE = {
    "eep-unknown-field": ("EnvoyExtensionPolicy", lambda d: _wasm(d).update(failopen=True), "Additional properties"),
    "eep-image-and-http": ("EnvoyExtensionPolicy",
                           lambda d: _wasm(d)["code"].update(http={"url": "https://x.example/a.wasm"}),
                           "CEL: self.type == 'HTTP' ? has(self.http) : !has(self.http)"),
    "eep-image-missing": ("EnvoyExtensionPolicy", lambda d: _wasm(d)["code"].pop("image"),
                          "CEL: self.type == 'Image' ? has(self.image) : !has(self.image)"),
    "eep-bad-code-type": ("EnvoyExtensionPolicy", lambda d: _wasm(d)["code"].update(type="File"), "is not one of"),
    "eep-hostkeys-not-list": ("EnvoyExtensionPolicy", lambda d: _wasm(d)["env"].update(hostKeys="SESSION_ROUTER_SECRET"),
                              "is not of type 'array'"),
    "eep-target-service": ("EnvoyExtensionPolicy", lambda d: d["spec"]["targetRefs"][0].update(kind="Service"),
                           "targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute"),
    "eep-no-target": ("EnvoyExtensionPolicy", lambda d: d["spec"].pop("targetRefs"), "either targetRef or targetRefs"),
    "eep-17-wasm": ("EnvoyExtensionPolicy", lambda d: d["spec"].update(wasm=[_wasm(d)] * 17), "is too long"),
    "btp-empty-extract": ("BackendTrafficPolicy",
                          lambda d: d["spec"]["loadBalancer"]["endpointOverride"].update(extractFrom=[]), "should be non-empty"),
    "btp-consistent-hash-without-config": ("BackendTrafficPolicy",
                                           lambda d: d["spec"]["loadBalancer"].update(type="ConsistentHash"),
                                           "CEL: self.type == 'ConsistentHash' ? has(self.consistentHash)"),
    "btp-bad-trigger": ("BackendTrafficPolicy", lambda d: d["spec"]["retry"]["retryOn"].update(triggers=["connect_failure"]),
                        "is not one of"),
    "btp-negative-retries": ("BackendTrafficPolicy", lambda d: d["spec"]["retry"].update(numRetries=-1),
                             "less than the minimum"),
    "btp-bad-per-try-timeout": ("BackendTrafficPolicy", lambda d: d["spec"]["retry"].update(perRetry={"timeout": "1 second"}),
                                "does not match"),
    "btp-target-wrong-group": ("BackendTrafficPolicy", lambda d: d["spec"]["targetRefs"][0].update(group="apps"),
                               "targetRefs[*].group of gateway.networking.k8s.io"),
    "route-bad-path-type": ("HTTPRoute", lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(type="Glob"),
                            "is not one of"),
    "route-relative-path": ("HTTPRoute", lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(value="shop"),
                            "CEL"),
    "gateway-duplicate-listener": ("Gateway", lambda d: d["spec"]["listeners"].append(copy.deepcopy(d["spec"]["listeners"][0])),
                                   "Listener name must be unique"),
    "gateway-no-class": ("Gateway", lambda d: d["spec"].pop("gatewayClassName"), "'gatewayClassName' is a required property"),
}


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_crd_validation_is_not_vacuous(crds, name):
    kind, change, fragment = NEGATIVE[name]
    errors = crd_errors(crds, _mutated(kind, change))
    assert errors, f"{name} was accepted"
    assert any(fragment in e for e in errors), f"{name}: expected an error containing {fragment!r}, got {errors}"


def test_preserve_unknown_fields_keeps_any_filter_config(crds):
    """`config` is free-form for the CRD (x-kubernetes-preserve-unknown-fields): the filter's own
    JSON Schema and the filter judge it (test_schema.py), not the API server."""
    doc = _one("EnvoyExtensionPolicy")
    _wasm(doc)["config"]["anything"] = {"goes": [1, 2.5]}
    assert crd_errors(crds, doc) == []


# ---- the manifests agree with each other and with the filter ---------------------------------------


def _targets(doc):
    return [(r["group"], r["kind"], r["name"]) for r in doc["spec"]["targetRefs"]]


def test_resources_reference_each_other():
    route, gateway, gclass = _one("HTTPRoute"), _one("Gateway"), _one("GatewayClass")
    assert gateway["spec"]["gatewayClassName"] == gclass["metadata"]["name"]
    assert gclass["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    (parent,) = route["spec"]["parentRefs"]
    assert parent["name"] == gateway["metadata"]["name"]
    assert parent["sectionName"] in [listener["name"] for listener in gateway["spec"]["listeners"]]
    target = [("gateway.networking.k8s.io", "HTTPRoute", route["metadata"]["name"])]
    assert _targets(_one("EnvoyExtensionPolicy")) == target, "the filter runs on the app's route only"
    assert _targets(_one("BackendTrafficPolicy")) == target, "the override_host cluster is the route's"
    ref = gateway["spec"]["infrastructure"]["parametersRef"]
    proxy = _one("EnvoyProxy")
    assert (ref["group"], ref["kind"], ref["name"]) == ("gateway.envoyproxy.io", "EnvoyProxy", proxy["metadata"]["name"])
    assert proxy["metadata"]["namespace"] == gateway["metadata"]["namespace"]


def test_policy_matches_the_filter_and_the_traffic_policy():
    wasm = _wasm(_one("EnvoyExtensionPolicy"))
    btp = _one("BackendTrafficPolicy")["spec"]
    config = wasm["config"]
    assert wasm["code"]["type"] == "Image" and wasm["code"]["image"]["url"].startswith("oci://")
    assert wasm.get("failOpen") is False, "a bypassed filter must not route requests"
    assert wasm["rootID"] == "session_router"
    # The header the filter sets is the one the cluster follows.
    assert config["target"]["header"] == "x-gateway-destination-endpoint"
    assert btp["loadBalancer"]["endpointOverride"]["extractFrom"] == [{"header": config["target"]["header"]}]
    assert btp["loadBalancer"]["type"] in ("LeastRequest", "RoundRobin", "Random"), "a fallback without its own stickiness"
    # One retry per fallback address, on the failures a dead pod causes.
    assert {"connect-failure", "reset"} <= set(btp["retry"]["retryOn"]["triggers"])
    assert btp["retry"]["numRetries"] >= config["target"]["fallbacks"] >= 1
    # The secret: named by the filter, passed by hostKeys, set by the EnvoyProxy from a Secret.
    cookie = config["sticky_cookie"]
    assert "secret" not in cookie
    assert wasm["env"]["hostKeys"] == [cookie["secret_env"]]
    container = _one("EnvoyProxy")["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]
    (var,) = container["env"]
    assert var["name"] == cookie["secret_env"] and var["valueFrom"]["secretKeyRef"]["name"]


# ---- the Istio manifests' CEL rules: the hand-written table agrees with a CEL evaluator -------------


def test_istio_rules_table_agrees_with_cel_python():
    """test_istio_crds evaluates Istio's CEL rules through hand-written Python equivalents (RULES).
    Every rule met while validating the Istio manifests and their broken variants is evaluated by
    both, and they must agree, with both verdicts seen."""
    if not test_istio_crds.CRD_DIR.is_dir():
        pytest.skip("Istio CRDs not found")
    verdicts = []

    def both(validator, rules, instance, schema):
        for rule in rules:
            text = " ".join(rule["rule"].split())
            try:
                table = bool(test_istio_crds.RULES[text](instance))
            except (TypeError, ValueError, AttributeError):
                table = False
            verdicts.append((text, json.dumps(instance, sort_keys=True), table, cel_holds(text, instance)[0]))
        return iter(())

    checker = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-kubernetes-validations": both})
    crds = test_istio_crds.load_istio_crds()
    base = test_istio_crds._wasmplugin()
    docs = [d for _, d in test_istio_crds.ISTIO_DOCS]
    docs += [test_istio_crds._mutated(base, change) for change in test_istio_crds.NEGATIVE.values()]
    for doc in docs:
        schema = crds.get((doc.get("apiVersion"), doc.get("kind")))
        if schema is not None:
            list(checker(schema).iter_errors(doc["spec"]))
    disagree = [v for v in verdicts if v[2] != v[3]]
    print(f"\n{len(verdicts)} Istio CEL verdicts over {len({v[0] for v in verdicts})} rules, "
          f"{sum(not v[3] for v in verdicts)} false; table and cel-python disagree on {len(disagree)}")
    assert disagree == [], disagree
    assert {v[3] for v in verdicts} == {True, False}, "both verdicts must occur"
    assert len({v[0] for v in verdicts}) >= 5, "too few distinct rules exercised"
