"""What is measured: the variants (one front Envoy config each, bench/envoy/), the ports, and the
configs generated from the files: fronts with the filter's module and shifted ports, the upstream
Envoy answering on every backend port."""

import copy
import json
import sys

import yaml

from .paths import BENCH, REPO


# (id, label, config file, request kind). Variant g shares f's Envoy: same config, new sessions.
VARIANTS = [
    ("a", "round robin, no filter", "a_round_robin.yaml", "sid"),
    ("b", "native RING_HASH (cookie hash_policy)", "b_ring_hash.yaml", "sid"),
    ("c", "native MAGLEV (cookie hash_policy)", "c_maglev.yaml", "sid"),
    ("d", "session-router ORIGINAL_DST", "d_original_dst.yaml", "sid"),
    ("e", "session-router override_host, 2 fallbacks", "e_override_host.yaml", "sid"),
    ("f", "session-router sticky cookie verified", "f_sticky.yaml", "srv"),
    ("g", "session-router sticky cookie issued (every request a new session)", "f_sticky.yaml", "sid"),
    ("h", "(e) without passive health", "h_override_host_nohealth.yaml", "sid"),
    ("i", "(e) with bounded load (factor 1.25)", "i_bounded_load.yaml", "sid"),
    ("o", "session-router ORIGINAL_DST minimal (no health)", "o_original_dst_minimal.yaml", "sid"),
    ("n", "no-op wasm filter setting a constant header (the floor)", "n_floor.yaml", "sid"),
]

OURS = ("d", "e", "f", "g", "h", "i", "o")

FLOOR_WASM = REPO / "target" / "bench-tools" / "noop_filter.wasm"  # bench/floor/noop_filter.rs

WASM_OF = {"n": FLOOR_WASM}  # variant id -> another build of the filter (--wasm-variant)

SHORT = {"a": "round robin", "b": "RING_HASH", "c": "MAGLEV", "d": "SR orig_dst", "e": "SR override",
         "f": "SR sticky ok", "g": "SR sticky new", "h": "SR no health", "i": "SR bounded load", "o": "SR orig_dst min",
         "n": "no-op floor"}

# Variants measured in instructions per request by the short (CI) run; the full run measures all.
SHORT_INSTRUCTIONS = ("n", "e", "i")

ALGOS = [
    ("ring_hash", "Envoy RING_HASH, default ring (min 1024)", "b_ring_hash.yaml"),
    ("ring_hash_256", "Envoy RING_HASH, 256 entries/host", "b_ring_hash.yaml"),
    ("maglev", "Envoy MAGLEV (table 65537)", "c_maglev.yaml"),
    ("session_router", "session-router ring (256 vnodes/weight)", "h_override_host_nohealth.yaml"),
    ("session_router_rendezvous", "session-router rendezvous (default)", "h_override_host_nohealth.yaml"),
]

# session-router's spread algorithms: its `placement.algorithm`, and the `spread run` placement
# argument of the same placement (a vnodes count for the ring, `rendezvous`).
SR_PLACEMENTS = {"session_router": ("ring", "256"), "session_router_rendezvous": ("rendezvous", "rendezvous")}

# Ports (all on 127.0.0.1). The backends' ports are their identities on every ring, so they are
# fixed; if any is taken (another Envoy on the machine), every port moves by the same offset.
PORT_OFFSET = 0

PORTS = {"front": 17001, "spread": 17101}

EQUAL_PORTS = range(18001, 18102)  # 101 backends: 100 + one to add

WEIGHTED = [(18201 + i, w) for i, w in enumerate([1, 1, 1, 1, 2, 2, 2, 4, 4, 8])]

WEIGHTED_ADD = (18211, 2)

WEIGHTED_REMOVE = 18205  # a weight-2 host


def all_ports(off):
    return ([PORTS["front"] + off + i for i in range(40)]
            + [PORTS["spread"] + off + i for i in range(20 * len(ALGOS))]
            + [p + off for p in EQUAL_PORTS] + [p + off for p, _ in WEIGHTED] + [WEIGHTED_ADD[0] + off])


def port_free(port):
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def choose_ports():
    """Applies the first offset at which every port this run needs is free."""
    global PORT_OFFSET, EQUAL_PORTS, WEIGHTED, WEIGHTED_ADD, WEIGHTED_REMOVE
    for off in range(0, 30000, 2500):
        if all(port_free(p) for p in all_ports(off)):
            break
    else:
        sys.exit("no free block of ports on 127.0.0.1")
    PORT_OFFSET = off
    for k in PORTS:
        PORTS[k] += off
    EQUAL_PORTS = range(EQUAL_PORTS.start + off, EQUAL_PORTS.stop + off)
    WEIGHTED = [(p + off, w) for p, w in WEIGHTED]
    WEIGHTED_ADD = (WEIGHTED_ADD[0] + off, WEIGHTED_ADD[1])
    WEIGHTED_REMOVE += off


def load_config(file):
    return yaml.safe_load((BENCH / "envoy" / file).read_text())


def endpoint(port, weight=None):
    ep = {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
    if weight is not None:
        ep["load_balancing_weight"] = weight
    return ep


def wasm_plugin(listener):
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] == "envoy.filters.http.wasm":
            return f["typed_config"]["config"]
    return None


def upstream_config(ports):
    cfg = load_config("upstream.yaml")
    (tmpl,) = cfg["static_resources"]["listeners"]
    listeners = []
    for port in ports:
        l = copy.deepcopy(tmpl)
        l["name"] = f"backend_{port}"
        l["address"]["socket_address"]["port_value"] = port
        vh = l["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
        vh["response_headers_to_add"][0]["header"]["value"] = str(port)
        listeners.append(l)
    cfg["static_resources"]["listeners"] = listeners
    return cfg


def front_config(file, listen_port, admin_port, wasm):
    cfg = load_config(file)
    cfg["admin"]["address"]["socket_address"]["port_value"] = admin_port
    (listener,) = cfg["static_resources"]["listeners"]
    listener["address"]["socket_address"]["port_value"] = listen_port
    plugin = wasm_plugin(listener)
    if plugin:
        plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)
        if PORT_OFFSET and not plugin["configuration"]["value"].lstrip().startswith("{"):
            # The floor's configuration is one header line naming one backend.
            name, ip, port = plugin["configuration"]["value"].rsplit(":", 2)
            plugin["configuration"]["value"] = f"{name}:{ip}:{int(port) + PORT_OFFSET}"
        elif PORT_OFFSET:
            fc = json.loads(plugin["configuration"]["value"])
            for h in fc["hosts"]:
                ip, port = h["address"].rsplit(":", 1)
                h["address"] = f"{ip}:{int(port) + PORT_OFFSET}"
            plugin["configuration"]["value"] = json.dumps(fc)
    for c in cfg["static_resources"]["clusters"]:
        for group in c.get("load_assignment", {}).get("endpoints", []):
            for ep in group["lb_endpoints"]:
                ep["endpoint"]["address"]["socket_address"]["port_value"] += PORT_OFFSET
    return cfg
