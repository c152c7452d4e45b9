"""The example configs in envoy/ load in Envoy as shipped."""

import json
import subprocess

import pytest
import yaml
from conftest import MODES, REPO, envoy_bin, render_config, require_wasm


@pytest.mark.parametrize("mode", MODES)
def test_example_config_validates(mode, tmp_path):
    # Validation loads the wasm and runs the filter's on_configure on the
    # example's own filter JSON, so it needs the release build.
    config = tmp_path / f"{mode}.yaml"
    config.write_text(yaml.safe_dump(render_config(mode, require_wasm())))
    result = subprocess.run(
        [envoy_bin(), "--mode", "validate", "-c", str(config), "-l", "warning"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"configuration '{config}' OK" in result.stdout


@pytest.mark.parametrize("mode", ["override_host", "stateful_session"])
def test_example_cluster_matches_filter_hosts(mode):
    config = yaml.safe_load((REPO / "envoy" / f"{mode}.yaml").read_text())
    listener = config["static_resources"]["listeners"][0]
    http_filters = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    plugin = http_filters[0]["typed_config"]["config"]
    hosts = [h["address"] for h in json.loads(plugin["configuration"]["value"])["hosts"]]
    (cluster,) = config["static_resources"]["clusters"]
    endpoints = [
        "{address}:{port_value}".format(**e["endpoint"]["address"]["socket_address"])
        for group in cluster["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    ]
    assert endpoints == hosts
