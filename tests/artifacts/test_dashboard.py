"""dashboards/session-router.json: a Grafana dashboard that loads as is (schemaVersion, panels,
a Prometheus datasource variable) and queries only metrics README.md documents — counters through
rate()/increase(), gauges directly — which a real Envoy running the filter does export."""

import json
import re
import time

import pytest
from artifacts_support import REPO, TEST_SECRET, render_envoy_config, require_filter
from srdev import Envoy

DASHBOARD = REPO / "dashboards" / "session-router.json"
METRIC = re.compile(r"\bsession_router_[a-z0-9_]+\b")
README_ROW = re.compile(r"^\|\s*`(session_router\.[a-z0-9_.]+)`(\s*\(gauge\))?\s*\|", re.MULTILINE)
# Prometheus-form names the Metrics section mentions in prose, e.g. `session_router_host_routed{...}`.
README_PROM_NAME = re.compile(r"`(session_router_[a-z0-9_]*[a-z0-9])(\{[^`]*\})?`")
# A selector on a family of metric names, e.g. {__name__=~"session_router_host_.+_routed"}.
NAME_REGEX = re.compile(r'__name__=~"([^"]+)"')
# The per-host counters as README describes them (`session_router.host.<id>.routed`, <id> with every
# character outside [A-Za-z0-9_-] replaced by `_`), as Prometheus names them (`-` becomes `_` too).
# Two per-host families: `routed`, and `spilled` (bounded load).
PER_HOST_FAMILIES = ("routed", "spilled")
PER_HOST_EXAMPLES = {f: [f"session_router_host_10_0_0_1_8080_{f}", f"session_router_host_backend_a_{f}"]
                     for f in PER_HOST_FAMILIES}
TAGGED_NAMES = {f"session_router_host_{f}" for f in PER_HOST_FAMILIES}  # with README's stats_tags rule


def metric_names(expr: str) -> list[str]:
    """Metric names in a PromQL expression: not label names (`by (...)`, `without (...)`) nor
    strings (label_replace arguments, name-family selectors, which NAME_REGEX handles)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    return METRIC.findall(expr)


def documented_metrics() -> dict[str, str]:
    """Prometheus name -> counter|gauge, from README.md's Metrics table (`a.b.c` is `a_b_c`)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Metrics"):]
    section = section[: section.index("\n## ", 1)]
    metrics = {m.group(1).replace(".", "_"): "gauge" if m.group(2) else "counter" for m in README_ROW.finditer(section)}
    for m in README_PROM_NAME.finditer(section):
        metrics.setdefault(m.group(1), "counter")  # prose names: README calls them counters
    assert len(metrics) >= 10, "README's Metrics table was not found"
    return metrics


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash):
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def exprs(dash):
    for panel in panels(dash):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            yield f"variable {var['name']}", var["query"]["query"]


def test_dashboard_loads_as_is():
    dash = dashboard()
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert "id" not in dash or dash["id"] is None, "an imported dashboard must not carry a database id"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dash):
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")) and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_queries_are_balanced_promql():
    for title, expr in exprs(dashboard()):
        for open_, close in ("()", "[]", "{}"):
            depth = 0
            for c in expr:
                depth += (c == open_) - (c == close)
                assert depth >= 0, f"{title}: unbalanced {open_}{close} in {expr}"
            assert depth == 0, f"{title}: unbalanced {open_}{close} in {expr}"


def test_every_queried_metric_is_documented_and_used_by_its_type():
    documented = documented_metrics()
    assert "session_router.host.<id>.routed" in (REPO / "README.md").read_text(), "per-host counters undocumented"
    for title, expr in exprs(dashboard()):
        for pattern in NAME_REGEX.findall(expr):
            family = re.compile(pattern)
            fits = [f for f, names in PER_HOST_EXAMPLES.items() if all(family.fullmatch(n) for n in names)]
            assert len(fits) == 1, f"{title}: {pattern} is not exactly one per-host family"
            others = [n for f, names in PER_HOST_EXAMPLES.items() if f != fits[0] for n in names]
            assert not any(family.fullmatch(n) for n in others), f"{title}: {pattern} matches another family"
            assert not any(family.fullmatch(n) for n in documented), f"{title}: {pattern} also matches {documented}"
            assert "rate(label_replace(" in expr, f"{title}: per-host counters must be rate()d"
        for name in metric_names(expr):
            assert name in documented, f"{title}: {name} is not in README's Metrics table"
            wrapped = re.search(rf"(rate|increase)\(\s*{name}\b", expr)
            if documented[name] == "counter" and "label_values" not in expr:
                assert wrapped, f"{title}: counter {name} must be read through rate()/increase()"
            if documented[name] == "gauge":
                assert not wrapped, f"{title}: gauge {name} must not be rate()d"


def test_dashboard_covers_the_operator_questions():
    used = {name for _, expr in exprs(dashboard()) for name in metric_names(expr)}
    for name in ["session_router_host_routed", "session_router_decision_pinned", "session_router_decision_hashed", "session_router_decision_new",
                 "session_router_decision_failover", "session_router_cookie_issued", "session_router_cookie_rejected",
                 "session_router_jwt_rejected", "session_router_health_healthy_hosts"]:
        assert name in used, f"no panel shows {name}"


@pytest.mark.parametrize("tagged", [False, True], ids=["plain-envoy", "with-readme-tag-rule"])
def test_real_envoy_exports_every_queried_metric(tmp_path, tagged):
    """The names (and types) the dashboard queries, scraped from Envoy's /stats/prometheus with
    the release .wasm loaded — per-host counters both as plain Envoy names them and with the
    stats_tags rule README gives."""
    envoy, wasm = require_filter()
    filter_json = json.dumps({
        "hosts": [{"address": "127.0.0.1:1", "id": "backend-a"}, {"address": "127.0.0.1:2"}],
        "sources": [{"type": "source_ip"}],
        "sticky_cookie": {"name": "srv", "ttl_seconds": 60, "secret": TEST_SECRET},
        "target": {"header": "x-envoy-original-dst-host"},
        "bounded_load": {"factor": 1.25},  # defines the per-host `spilled` counters too
    })
    rendered = render_envoy_config(filter_json, wasm)
    if tagged:
        text = (REPO / "README.md").read_text()
        rule = re.search(r"stats_tags:\n  - tag_name: (\S+)\n    regex: '([^']+)'", text)
        assert rule, "README's stats_tags rule for the per-host counters"
        rendered["stats_config"] = {"stats_tags": [{"tag_name": rule.group(1), "regex": rule.group(2)}]}
    proc = Envoy("dashboard", rendered, tmp_path, 1, "warning", binary=envoy, component_log_level=None)
    try:
        proc.wait_ready()
        scrape = _scrape(proc)
    finally:
        proc.stop()
    exported = dict(re.findall(r"^# TYPE (session_router_[a-z0-9_-]+) (counter|gauge)$", scrape, re.MULTILINE))
    documented = documented_metrics()
    per_host = {n for n in exported if n.startswith("session_router_host_") and n not in TAGGED_NAMES}
    for title, expr in exprs(dashboard()):
        for name in metric_names(expr):
            if name in TAGGED_NAMES and not tagged:
                continue  # exists only with the tag rule
            assert exported.get(name) == documented[name], f"{title}: {name}: Envoy exports {exported.get(name)}"
        for pattern in NAME_REGEX.findall(expr):
            matched = {n for n in exported if re.fullmatch(pattern, n)}
            (family,) = [f for f in PER_HOST_FAMILIES if pattern.endswith(f"_{f}")]
            expected = set() if tagged else {n for n in per_host if n.endswith(f"_{family}")}
            assert matched == expected and all(exported[n] == "counter" for n in matched), (title, matched)
    if tagged:
        for family in PER_HOST_FAMILIES:
            assert re.search(rf'^session_router_host_{family}\{{session_router_host="backend-a"\}} ', scrape, re.MULTILINE)
    else:  # Prometheus names: - becomes _
        assert per_host == {f"session_router_host_{h}_{f}" for h in ("backend_a", "127_0_0_1_2") for f in PER_HOST_FAMILIES}


def _scrape(envoy) -> str:
    """/stats/prometheus once the filter's metrics are there (its VMs start after Envoy is LIVE)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            text = envoy.prometheus()
            if "session_router_decision_new" in text:
                return text
        except OSError:  # refused, reset or timed out: try again
            pass
        time.sleep(0.2)
    pytest.fail("no session_router metrics on /stats/prometheus:\n" + envoy.log_tail())
