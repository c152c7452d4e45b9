#!/usr/bin/env python3
"""session-router in a real Envoy: three echo backends, Envoy with envoy/override_host.yaml
(the recommended mode), and a short story of sessions sticking, a forged header being
ignored and a backend dying. Every step checks what it shows, so a non-zero exit means the
filter did not behave as described: the demo doubles as a smoke test.

Run it through scripts/demo.sh (which installs what is missing and builds the .wasm first), or
directly:
    python3 scripts/demo.py [--keep-running]
Envoy and the filter are found by scripts/srdev.py ($ENVOY_BIN, $SESSION_ROUTER_WASM).
"""

import argparse
import base64
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "envoy"))
try:
    from harness import Envoy, Upstream, envoy_bin, example_filter_config, http, render_config, wasm_path
    from srdev import INSTALL_HINT, envoy_version, missing_wasm_hint
except ModuleNotFoundError as error:  # pyyaml
    sys.exit(f"demo: {error}; install it with: pip install -r tests/requirements.txt")

MODE = "override_host"
CONFIG_FILE = f"envoy/{MODE}.yaml"
NAMES = ["backend-1", "backend-2", "backend-3"]
USERS = ["alice", "bob", "carol"]
REQUESTS = 5
FORGED = "169.254.169.254:80"


class DemoFailed(Exception):
    """An expectation of the story did not hold."""


def expect(condition, what):
    if not condition:
        raise DemoFailed(what)


def say(text=""):
    print(text, flush=True)


def step(number, title):
    say()
    say(f"{number}. {title}")


def unsigned_jwt(claims):
    """A JWT with the given payload and a dummy signature: the filter decodes, it does not verify."""
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.ZGVtby1ub3Qtc2lnbmVk"


class Demo:
    def __init__(self, envoy, backends, target_header):
        self.envoy = envoy
        self.backends = backends
        self.target_header = target_header
        self.name_of = {b.addr: b.name for b in backends}
        self.by_name = {b.name: b for b in backends}

    # --- requests -------------------------------------------------------------------------

    def get(self, headers=(), path="/"):
        """One request; returns (status, backend name or None, Set-Cookie values, the target
        header the backend saw as a list of backend names)."""
        status, response_headers, body = http(self.envoy, path, headers, timeout=10)
        cookies = [v for k, v in response_headers if k == "set-cookie"]
        if status != 200 or not isinstance(body, dict):
            return status, None, cookies, []
        seen = body["headers"].get(self.target_header, "")
        expect(isinstance(seen, str), f"the backend saw several {self.target_header} headers: {seen}")
        chain = [self.name_of.get(a, a) for a in seen.split(",") if a]
        return status, body["name"], cookies, chain

    def served(self, headers=(), what="request"):
        """get(), expecting a 200 from one of the three backends."""
        status, name, cookies, chain = self.get(headers)
        expect(status == 200, f"{what}: HTTP {status}, expected 200")
        expect(name in self.by_name, f"{what}: answered by {name!r}, not one of the backends")
        return name, cookies, chain

    def counters(self):
        prefix = "wasmcustom."
        return {
            k[len(prefix):]: v for k, v in self.envoy.stats().items() if k.startswith(prefix + "session_router.")
        }

    def decision(self, before):
        """Which session_router.decision.* counters went up since `before`."""
        after = self.counters()
        return ",".join(
            k.rsplit(".", 1)[1] for k, v in sorted(after.items())
            if k.startswith("session_router.decision.") and v > before.get(k, 0)
        ) or "?"

    # --- the story ------------------------------------------------------------------------

    def new_visitor(self):
        step(1, "A new visitor: no cookie, no user id (so the filter keys it by client IP)")
        before = self.counters()
        name, cookies, chain = self.served(what="new visitor")
        sticky = [c for c in cookies if c.startswith("srv=")]
        expect(len(sticky) == 1, f"new visitor: expected one Set-Cookie srv=..., got {cookies}")
        value = sticky[0].split(";", 1)[0].split("=", 1)[1]
        attributes = sticky[0].split(";", 1)[1].strip() if ";" in sticky[0] else ""
        say(f"   GET /                           -> {name}   [{self.decision(before)}]")
        say(f"   Set-Cookie: srv={short(value)}; {attributes}")
        for i in range(1, REQUESTS + 1):
            before = self.counters()
            again, cookies, _ = self.served([("cookie", f"srv={value}")], what=f"visitor request {i}")
            decision = self.decision(before)
            say(f"   GET / with cookie srv=... (#{i})  -> {again}   [{decision}]")
            expect(again == name, f"visitor request {i} with the cookie went to {again}, not {name}")
            expect(decision == "pinned", f"visitor request {i}: decision {decision}, expected pinned")
            expect(not any(c.startswith("srv=") for c in cookies), f"visitor request {i}: cookie re-issued")
        say(f"   -> all {REQUESTS} pinned to {name} by the signed cookie (which does not reveal the address)")
        return value, name

    def users(self):
        step(2, f"Three users by x-user-id, {REQUESTS} requests each")
        owners, chains = {}, {}
        for user in USERS:
            served = [self.served([("x-user-id", user)], what=f"{user}") for _ in range(REQUESTS)]
            names = [s[0] for s in served]
            chains[user] = served[0][2]
            say(f"   {user:<6} -> {' '.join(names)}   (fallbacks: {', '.join(chains[user][1:])})")
            expect(len(set(names)) == 1, f"{user} is spread over {sorted(set(names))}")
            expect(chains[user][0] == names[0], f"{user}: target header {chains[user]} does not start with {names[0]}")
            owners[user] = names[0]
        say(f"   -> each user sticks; {self.target_header} lists the host, then its ring successors")
        return owners, chains

    def jwt_user(self):
        step(3, "A JWT user: Authorization: Bearer <unsigned demo token, sub=dave>")
        token = unsigned_jwt({"sub": "dave", "exp": int(time.time()) + 3600})
        headers = [("authorization", f"Bearer {token}")]
        names = [self.served(headers, what="JWT user")[0] for _ in range(REQUESTS)]
        say(f"   sub=dave -> {' '.join(names)}")
        expect(len(set(names)) == 1, f"JWT user dave is spread over {sorted(set(names))}")
        same, _, _ = self.served([("x-user-id", "dave")], what="x-user-id dave")
        say(f"   x-user-id: dave -> {same} (same key from another source, same host)")
        expect(same == names[0], f"x-user-id dave went to {same}, the JWT with sub=dave to {names[0]}")
        say("   (the token is decoded, not verified: put Envoy's jwt_authn in front for real identity)")
        return names[0]

    def forged_header(self):
        step(4, f"A client forges {self.target_header}: {FORGED}")
        honest, _, _ = self.served([("x-user-id", "mallory")], what="mallory")
        name, _, chain = self.served(
            [(self.target_header, FORGED), ("x-user-id", "mallory")], what="forged header"
        )
        say(f"   mallory with the forged header -> {name}, the backend saw {self.target_header}: {', '.join(chain)}")
        say(f"   mallory without it             -> {honest}")
        expect(not any(FORGED in c for c in chain), f"the forged address reached the backend: {chain}")
        expect(chain and all(c in self.by_name for c in chain), f"target header names unknown hosts: {chain}")
        expect(name == honest, f"the forged header moved mallory from {honest} to {name}")
        say("   -> the filter replaced the header; Envoy only routes to the cluster's own endpoints")

    def backend_dies(self, owners, chains, visitor):
        dead = owners["alice"]
        successor = chains["alice"][1]
        step(5, f"Stop {dead}, which serves alice (her fallback list: {', '.join(chains['alice'][1:])})")
        retries_before = self.envoy.stats().get("cluster.backends.upstream_rq_retry", 0)
        self.by_name[dead].stop()
        say(f"   {dead} stopped")
        names = []
        for i in range(1, REQUESTS + 1):
            status, name, _, _ = self.get([("x-user-id", "alice")])
            say(f"   alice #{i} -> HTTP {status} from {name}")
            expect(status == 200, f"alice request {i} after {dead} stopped: HTTP {status}")
            names.append(name)
        expect(set(names) == {successor}, f"alice went to {names}, expected her ring successor {successor}")
        for user in USERS[1:]:
            name, _, _ = self.served([("x-user-id", user)], what=f"{user} after {dead} stopped")
            if owners[user] == dead:
                say(f"   {user:<6} -> {name} (was on {dead} too: moved to its own successor)")
                expect(name == chains[user][1], f"{user} went to {name}, expected {chains[user][1]}")
            else:
                say(f"   {user:<6} -> {name} (unaffected)")
                expect(name == owners[user], f"{user} moved from {owners[user]} to {name}")
        value, visitor_host = visitor
        if visitor_host == dead:
            name, cookies, _ = self.served([("cookie", f"srv={value}")], what="visitor after the stop")
            say(f"   the step-1 visitor (pinned to {dead}) -> {name}"
                + (", with a new cookie" if any(c.startswith("srv=") for c in cookies) else ""))
        retries = self.envoy.stats().get("cluster.backends.upstream_rq_retry", 0) - retries_before
        address = self.by_name[dead].addr
        ejected = [line for line in self.envoy.log_text().splitlines() if " ejected " in line and address in line]
        say(f"   Envoy retried {retries} request(s) on the next host of the list; no request failed")
        if ejected:
            say(f"   Envoy's log: session-router: {ejected[0].split('session-router: ', 1)[-1]}")
        return dead

    def counters_table(self):
        step(6, "The filter's counters (Envoy admin /stats, wasmcustom.session_router.*)")
        counters = self.counters()
        width = max(map(len, counters))
        for name, value in sorted(counters.items()):
            say(f"   {name:<{width}}  {value}")
        expect(counters.get("session_router.decision.pinned", 0) >= REQUESTS,
               f"decision.pinned is {counters.get('session_router.decision.pinned')}, expected {REQUESTS} or more")
        expect(counters.get("session_router.decision.hashed", 0) >= REQUESTS * (len(USERS) + 1),
               f"decision.hashed is {counters.get('session_router.decision.hashed')}, too low")
        expect(counters.get("session_router.cookie.issued", 0) >= 1, "no cookie.issued counted")
        expect(counters.get("session_router.health.ejections", 0) >= 1, "the stopped backend was not ejected")


def short(value, keep=16):
    return value if len(value) <= keep + 8 else f"{value[:keep]}...({len(value)} chars)"


def keep_running(demo, dead, visitor_cookie):
    demo.by_name[dead].start()
    url, admin = demo.envoy.url, demo.envoy.admin_url
    say()
    say(f"Envoy is up at {url} (admin {admin}); {dead} was restarted on its old port.")
    say(f"Envoy's log: {demo.envoy.log_path}")
    say("Try:")
    say(f"   curl -i {url}/ -H 'x-user-id: alice'")
    say(f"   curl -i {url}/ -b 'srv={visitor_cookie}'")
    say(f"   curl -i '{url}/?sid=my-session'")
    say(f"   curl -i {url}/ -H '{demo.target_header}: {FORGED}'")
    say(f"   curl -s {admin}/stats | grep session_router")
    say("Ctrl-C stops Envoy and the backends.")
    while demo.envoy.running():
        time.sleep(0.5)
    raise RuntimeError("Envoy exited")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-running", action="store_true",
                        help="after the story, leave Envoy and the backends up until Ctrl-C")
    args = parser.parse_args()

    binary = envoy_bin()
    if not binary:
        sys.exit(f"demo: no Envoy: {INSTALL_HINT}")
    wasm = wasm_path()
    if not wasm.is_file():
        sys.exit(f"demo: {missing_wasm_hint()}")

    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (`... &` in a script),
    # and SIGTERM unwinds too, so the finally below stops Envoy and the backends either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    backends, envoy, story_done = [], None, False
    with tempfile.TemporaryDirectory(prefix="session-router-demo-") as workdir:
        try:
            backends = [Upstream(name) for name in NAMES]
            filter_config = example_filter_config(MODE)
            # The file's own filter config, with its hosts moved onto the three backends.
            filter_config["hosts"] = [{**host, "address": b.addr} for host, b in zip(filter_config["hosts"], backends)]
            expect(len(filter_config["hosts"]) == len(backends), f"{CONFIG_FILE} does not list {len(backends)} hosts")
            config = render_config(MODE, wasm, filter_config, [b.addr for b in backends])
            envoy = Envoy(MODE, config, workdir, binary=binary)
            envoy.wait_ready()

            say(f"session-router demo: Envoy {envoy_version(binary)} with {CONFIG_FILE}")
            say(f"   filter:   {wasm.relative_to(REPO) if wasm.is_relative_to(REPO) else wasm}")
            say(f"   backends: {'   '.join(f'{b.name} {b.addr}' for b in backends)}")
            say(f"   Envoy:    {envoy.url} (admin {envoy.admin_url})")

            demo = Demo(envoy, backends, filter_config["target"]["header"])
            visitor = demo.new_visitor()
            owners, chains = demo.users()
            demo.jwt_user()
            demo.forged_header()
            dead = demo.backend_dies(owners, chains, visitor)
            demo.counters_table()
            say()
            say("All expectations held.")
            story_done = True
            if args.keep_running:
                keep_running(demo, dead, visitor[0])
            return 0
        except KeyboardInterrupt:
            say()
            say("Interrupted.")
            return 0 if story_done else 130
        except DemoFailed as failure:
            print(f"\nDEMO FAILED: {failure}", file=sys.stderr)
            show_log(envoy)
            return 1
        except Exception as error:  # noqa: BLE001 - report anything, then clean up
            print(f"\nDEMO FAILED: {type(error).__name__}: {error}", file=sys.stderr)
            show_log(envoy)
            return 1
        finally:
            if envoy is not None:
                envoy.stop()
            for backend in backends:
                backend.stop()


def show_log(envoy):
    if envoy is not None:
        print(f"--- last lines of Envoy's log ({envoy.log_path}) ---", file=sys.stderr)
        print(envoy.log_tail(40), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
