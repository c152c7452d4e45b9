"""Kubernetes CRDs as JSON Schema, for the Istio (test_istio_crds.py) and Envoy Gateway
(test_envoy_gateway.py) manifest tests.

`to_json_schema` converts a CRD's openAPIV3Schema the way the API server applies it: unknown fields
are errors (kubectl's strict field validation) unless `x-kubernetes-preserve-unknown-fields`;
`nullable` admits null; int32/int64 formats bound integers; `x-kubernetes-list-type: map` keys and
`set` entries are unique. CEL rules (`x-kubernetes-validations`) are checked by the keyword
function each caller passes to `crd_validator`.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml
from jsonschema import ValidationError

INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def _list_map_keys(validator, keys, instance, schema):
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen = set()
    for item in instance:
        key = tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)
        if key in seen:
            yield ValidationError(f"duplicate entry for list-map key(s) {keys}: {key}")
        seen.add(key)


def _list_type(validator, kind, instance, schema):
    if kind == "set" and isinstance(instance, list):
        dumped = [json.dumps(i, sort_keys=True) for i in instance]
        if len(dumped) != len(set(dumped)):
            yield ValidationError("duplicate entries in a list of type set")


def crd_validator(cel):
    """A Draft 2020-12 validator class with the Kubernetes keywords; `cel` checks
    `x-kubernetes-validations` (a jsonschema keyword function)."""
    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        {
            "x-kubernetes-validations": cel,
            "x-kubernetes-list-map-keys": _list_map_keys,
            "x-kubernetes-list-type": _list_type,
        },
    )


def to_json_schema(node):
    """An OpenAPI v3 (Kubernetes structural) schema as JSON Schema 2020-12 + the x- keywords above."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k not in ("description", "nullable")}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    if node.get("format") in INT_BOUNDS and node.get("type") == "integer":
        lo, hi = INT_BOUNDS[node["format"]]
        out.setdefault("minimum", lo)
        out.setdefault("maximum", hi)
    if node.get("format"):
        out.pop("format")  # date-time etc. are annotations for this purpose
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_documents(crd_dir: Path):
    """Every CustomResourceDefinition in crd_dir/*.yaml."""
    for path in sorted(crd_dir.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                yield crd


def load_crds(crd_dir: Path) -> dict:
    """(apiVersion, kind) -> spec schema (JSON Schema), for every served version of every CRD."""
    crds = {}
    for crd in crd_documents(crd_dir):
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                crds[(f"{group}/{version['name']}", kind)] = to_json_schema(spec)
    return crds


def cel_rules(crd_dir: Path) -> set[str]:
    """Every CEL rule (whitespace-normalised) of the CRDs in crd_dir."""
    rules = set()

    def walk(node):
        if isinstance(node, dict):
            rules.update(" ".join(r["rule"].split()) for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for crd in crd_documents(crd_dir):
        walk(crd)
    return rules


def crd_errors(crds, doc, validator, crd_dir, prepare=None, check_schema=False) -> list[str]:
    """The errors of doc's spec against its CRD, as `spec/<path>: message` lines; `prepare` turns
    the spec into what is validated (e.g. the API server's defaulting); check_schema also checks
    the converted schema against the metaschema."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in crds:
        return [f"{key} is not a served version of any CRD in {crd_dir}"]
    schema = crds[key]
    if check_schema:
        validator.check_schema(schema)
    spec = prepare(schema, doc.get("spec")) if prepare else doc.get("spec")
    errors = sorted(validator(schema).iter_errors(spec), key=lambda e: list(e.absolute_path))
    return [f"spec/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
