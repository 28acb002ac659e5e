#!/usr/bin/env bash
# fluxrelay's benchmark: ingest against nginx and webhook, end to end into a real Alertmanager and
# Alertmanager fed straight by wrk, the Redis spool, each stage of ingest alone, the allocator
# compared, memory and start-up — one run, one machine, one table, written to bench/results.md.
#
#   bench/run.sh                       installs what is missing (Debian), builds build-bench/ in
#                                      Release, runs everything (~6 minutes with the defaults)
#   DURATION=3s CONCURRENCY="1 32" E2E_DURATION=5s BACKLOG=2000 QUEUED=5000 bench/run.sh
#                                      a quick smoke run
#
# Environment (defaults in brackets):
#   BUILD_TYPE [Release]    CMake build type of build-bench/ (RelWithDebInfo while -O3 is suspect)
#   FLUXRELAY_BIN           measure this binary instead of building one
#   DURATION [10s]          each ingest measurement (wrk -d)
#   CONCURRENCY ["1 8 32 128"]  wrk connections, one row each
#   THREADS [2]             wrk threads (never more than connections)
#   RATE [1000]             requests/s of the paced latency run; PACED_CONNECTIONS [20]
#   E2E_DURATION [30s]      sustained end-to-end run; E2E_CONNECTIONS [32]
#   BACKLOG [50000]         deliveries queued while Alertmanager is down, then drained
#   QUEUED [100000]         deliveries queued for the memory measurement
#   POOL [30000]            distinct pre-signed events the load generator cycles through
#   STARTUP_RUNS [5]        exec → /readyz 200 measurements (median reported)
#   PERF [1], PERF_AT [32]  profile fluxrelay with perf (when installed) in an ingest run of its own
#                           at PERF_AT connections, the connections of the allocator, Redis and
#                           floor runs too; its top symbols go into the report (PERF=0: off)
#   RESULTS [bench/results.md]  where the report goes
#
# The events: pre-generated, each ~1 KB, HMAC-SHA256 signed (python3's hmac), every one a
# distinct object and message. Routes keep Flux's dedup (mode flux) with a 1 s window: a body
# comes back only after POOL / rate seconds (≥ 1 s at up to POOL requests/s), so dedup computes,
# looks up and stores a key for every event and drops none; the run counts
# fluxrelay_events_dropped_total{reason="duplicate"} and reports it (not 0: raise POOL).
# nginx and webhook receive the same bodies and signatures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

BUILD_TYPE=${BUILD_TYPE:-Release}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-1 8 32 128}
THREADS=${THREADS:-2}
RATE=${RATE:-1000}
PACED_CONNECTIONS=${PACED_CONNECTIONS:-20}
E2E_DURATION=${E2E_DURATION:-30s}
E2E_CONNECTIONS=${E2E_CONNECTIONS:-32}
BACKLOG=${BACKLOG:-50000}
QUEUED=${QUEUED:-100000}
POOL=${POOL:-30000}
STARTUP_RUNS=${STARTUP_RUNS:-5}
PERF=${PERF:-1}
PERF_AT=${PERF_AT:-32}
RESULTS=${RESULTS:-bench/results.md}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
seconds() { local d=$1; case $d in *ms) echo "0.${d%ms}";; *s) echo "${d%s}";; *m) echo $(( ${d%m} * 60 ));; *) echo "$d";; esac; }

# ---------------------------------------------------------------------------------------------
# Tools: Debian's packages, installed only when missing.
need_packages=()
command -v wrk >/dev/null || need_packages+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_packages+=(nginx-light)
command -v webhook >/dev/null || need_packages+=(webhook)
command -v prometheus-alertmanager >/dev/null || need_packages+=(prometheus-alertmanager)
command -v python3 >/dev/null || need_packages+=(python3)
command -v curl >/dev/null || need_packages+=(curl)
command -v redis-server >/dev/null || need_packages+=(redis-server)
mimalloc=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
[ -e "$mimalloc" ] || need_packages+=(libmimalloc2.0)
if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]}"
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  # Where the package starts a system nginx (port 80), it is left alone: the benchmark runs its own.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin
for tool in wrk nginx webhook prometheus-alertmanager python3 curl redis-server; do
  command -v "$tool" >/dev/null || die "$tool not found after installing; install it by hand (Debian: see bench/run.sh)"
done

# ---------------------------------------------------------------------------------------------
# The relay: a build-bench/ in BUILD_TYPE, unless FLUXRELAY_BIN names one.
if [ -n "${FLUXRELAY_BIN:-}" ]; then
  binary=$FLUXRELAY_BIN
  build_desc="given binary $binary"
else
  scripts/install-deps.sh --build >/dev/null
  log "building fluxrelay ($BUILD_TYPE) in build-bench/"
  cmake -G Ninja -B build-bench -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
  cmake --build build-bench --target fluxrelay fluxrelay-bench-components -j "${JOBS:-$(nproc)}" >/dev/null
  binary=$repo/build-bench/fluxrelay
  build_desc="$BUILD_TYPE (build-bench/)"
fi
[ -x "$binary" ] || die "no fluxrelay binary at $binary"
binary=$(readlink -f "$binary")
# The stages of ingest timed alone: built beside the binary (COMPONENTS_BIN to name another).
components=${COMPONENTS_BIN:-$(dirname "$binary")/fluxrelay-bench-components}

# ---------------------------------------------------------------------------------------------
# Scratch space and the processes we start; all gone on exit.
work=$(mktemp -d /tmp/fluxrelay-bench.XXXXXX)
# A copy, so that a rebuild during the run does not change what is measured halfway.
cp "$binary" "$work/fluxrelay"
binary_source=$binary
binary=$work/fluxrelay
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_http URL [STATUS] [TRIES×0.05 s]
wait_http() {
  local url=$1 want=${2:-200} tries=${3:-400} code
  for _ in $(seq "$tries"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    [ "$code" = "$want" ] && return 0
    sleep 0.05
  done
  return 1
}
stop_pid() {  # SIGTERM, wait (bounded), SIGKILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# metric URL NAME: sum of every series of one metric
metric() {
  curl -s --max-time 5 "$1" | awk -v name="$2" '$1 == name || index($1, name "{") == 1 {sum += $NF} END {printf "%d\n", sum}'
}

# ---------------------------------------------------------------------------------------------
# The events: POOL distinct signed Flux events, one "signature<TAB>body" line each.
hmac_key=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
printf '%s' "$hmac_key" > "$work/flux-hmac"
python3 - "$work/pool.txt" "$POOL" "$hmac_key" <<'PY'
import hashlib, hmac, json, sys, uuid
out, count, key = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
kinds = [("Kustomization", "kustomize.toolkit.fluxcd.io/v1", "kustomize-controller", "HealthCheckFailed"),
         ("HelmRelease", "helm.toolkit.fluxcd.io/v2", "helm-controller", "UpgradeFailed"),
         ("GitRepository", "source.toolkit.fluxcd.io/v1", "source-controller", "GitOperationFailed"),
         ("OCIRepository", "source.toolkit.fluxcd.io/v1beta2", "source-controller", "OCIArtifactPullFailed"),
         ("HelmRepository", "source.toolkit.fluxcd.io/v1", "source-controller", "IndexationFailed"),
         ("FluxInstance", "fluxcd.controlplane.io/v1", "flux-operator", "ReconciliationFailed")]
with open(out, "w") as f:
    for i in range(count):
        kind, api, controller, reason = kinds[i % len(kinds)]
        name, ns = f"app-{i:06d}", f"team-{i % 40:02d}"
        sha = hashlib.sha1(str(i).encode()).hexdigest()
        message = (f"Health check failed after 5m0s: timeout waiting for: [Deployment/{ns}/{name} status: "
                   f"'InProgress', StatefulSet/{ns}/{name}-db status: 'InProgress', Service/{ns}/{name} "
                   f"status: 'Current'] at revision main@sha1:{sha}; last applied {i % 97} objects, "
                   f"{i % 13} pending, attempt {i % 7 + 1} of 10, next retry in {i % 50 + 10}s")
        event = {
            "involvedObject": {"kind": kind, "namespace": ns, "name": name, "uid": str(uuid.UUID(int=i + 1)),
                               "apiVersion": api, "resourceVersion": str(100000 + i)},
            "severity": "error", "timestamp": "2026-11-27T10:00:00Z", "message": message, "reason": reason,
            "metadata": {"revision": f"main@sha1:{sha}", "cluster": "home",
                         "summary": f"{kind} {ns}/{name} is failing"},
            "reportingController": controller, "reportingInstance": f"{controller}-7f5c9d7b9d-x2v6q",
        }
        body = json.dumps(event, separators=(",", ":"))
        pad = 1024 - len(body)
        if pad > 0:  # ~1 KB bodies
            event["metadata"]["summary"] += " " + "." * (pad - 1)
            body = json.dumps(event, separators=(",", ":"))
        signature = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        f.write(f"{signature}\t{body}\n")
PY
body_bytes=$(head -1 "$work/pool.txt" | cut -f2- | wc -c)

# One wrk script for every server: each thread sends its own share of the pool in turn.
cat > "$work/post.lua" <<'LUA'
local pool = os.getenv("BENCH_POOL")
local path = os.getenv("BENCH_PATH")
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local ok_status = tonumber(os.getenv("BENCH_OK_STATUS") or "202")
local method = os.getenv("BENCH_METHOD") or "POST"
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  requests, ok, other, index = {}, 0, 0, 0
  local i = 0
  for line in io.lines(pool) do
    if i % nthreads == tid then
      local tab = line:find("\t", 1, true)
      local body = line:sub(tab + 1)
      if method == "GET" then body = nil end
      requests[#requests + 1] = wrk.format(method, path, {
        ["Content-Type"] = "application/json",
        ["X-Signature"] = "sha256=" .. line:sub(1, tab - 1),
      }, body)
    end
    i = i + 1
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

if pace > 0 then
  -- Paced: this thread's requests follow a fixed schedule of one every `pace` ms (its share of
  -- the rate); a connection whose slot is still ahead waits for it, one that is late sends at once.
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *t);
  ]]
  local now_ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, now_ts)  -- CLOCK_MONOTONIC
    return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
  end
  local next_slot = nil
  function delay()
    local now = now_ms()
    if next_slot == nil or next_slot < now - 1000 then next_slot = now end
    local slot = next_slot
    next_slot = next_slot + pace
    return math.max(0, math.floor(slot - now + 0.5))
  end
end

function response(status, headers, body)
  if status == ok_status then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local accepted, rest = 0, 0
  for _, thread in ipairs(threads) do
    accepted = accepted + thread:get("ok")
    rest = rest + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format("BENCH rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d accepted=%d other=%d socket_errors=%d\n",
    summary.requests / summary.duration * 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, accepted, rest, e.connect + e.read + e.write + e.timeout))
end
LUA

# run_wrk URL CONNECTIONS DURATION [DELAY_MS] → the BENCH line. BENCH_POOL, BENCH_OK_STATUS and
# BENCH_METHOD, when set, name another pool, the status that counts as accepted, a GET.
run_wrk() {
  local url=$1 connections=$2 duration=$3 pace=${4:-0} threads=$THREADS
  [ "$connections" -lt "$threads" ] && threads=$connections
  BENCH_POOL="${BENCH_POOL:-$work/pool.txt}" BENCH_PATH="/${url#http://*/}" BENCH_THREADS=$threads BENCH_DELAY_MS=$pace \
    wrk -t"$threads" -c"$connections" -d"$duration" --timeout 10s -s "$work/post.lua" "$url" > "$work/wrk.out" 2>&1 \
    || { cat "$work/wrk.out" >&2; die "wrk failed against $url"; }
  grep '^BENCH ' "$work/wrk.out" || { cat "$work/wrk.out" >&2; die "no result from wrk against $url"; }
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
# cpu_per TICKS COUNT → µs of CPU per item
cpu_per() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN {printf "%.0f", t / hz * 1e6 / (n ? n : 1)}'; }

# ---------------------------------------------------------------------------------------------
# fluxrelay: 6 routes, one per kind home-ops watches, each with home-ops' exclusion list.
# start_relay NAME TARGET_URL [CONCURRENCY] → sets relay_pid, relay_ingest, relay_admin
start_relay() {
  local name=$1 target=$2 concurrency=${3:-} kind
  # RELAY_STORAGE, when set, replaces the SQLite spool (the Redis run).
  local storage=${RELAY_STORAGE:-"{path: $work/data-$name}"}
  relay_ingest=$(free_port); relay_admin=$(free_port)
  rm -rf "$work/data-$name"
  {
    cat <<YAML
server: {listen: 127.0.0.1:$relay_ingest${RELAY_SERVER:+, $RELAY_SERVER}}
admin: {listen: 127.0.0.1:$relay_admin}
storage: $storage
sources: [{name: flux, type: flux, path: /flux/events, hmacKeyFile: ./flux-hmac}]
targets:
  - name: alertmanager
    type: alertmanager
    address: $target
    maxBatch: 64${concurrency:+
    concurrency: $concurrency}
    retry: {initialInterval: 100ms, maxInterval: 1s}
routes:
YAML
    for kind in FluxInstance GitRepository HelmRelease HelmRepository Kustomization OCIRepository; do
      cat <<YAML
  - name: home-ops-$kind
    source: flux
    eventSeverity: error
    eventSources: [{kind: $kind, name: "*"}]
    exclusionList: ["error.*lookup.*github", "dial.*tcp.*timeout", "dial.*tcp.*unreachable", "waiting.*socket"]
    dedup: {mode: flux, window: 1s}
    targets: [alertmanager]
YAML
    done
  } > "$work/$name.yaml"
  # RELAY_PRELOAD: a library to preload (the allocator comparison); env execs, so the pid is the relay's.
  env ${RELAY_PRELOAD:+LD_PRELOAD=$RELAY_PRELOAD} "$binary" serve --config "$work/$name.yaml" --log-level warn 2>>"$work/$name.log" &
  relay_pid=$!
  pids+=("$relay_pid")
  wait_http "http://127.0.0.1:$relay_admin/readyz" || { tail -20 "$work/$name.log" >&2; die "fluxrelay ($name) not ready"; }
}
stop_relay() {  # SIGTERM: a graceful stop exits 0; anything else is a crash (-O3 is under suspicion)
  local status=0
  kill -TERM "$relay_pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$relay_pid" 2>/dev/null || true
  wait "$relay_pid" 2>/dev/null || status=$?
  if [ "$status" -ne 0 ] || grep -qi 'corrupt' "$work/$1.log"; then
    tail -20 "$work/$1.log" >&2
    die "fluxrelay ($1) exited with status $status on SIGTERM (build: $build_desc)"
  fi
}
relay_alive() { kill -0 "$relay_pid" 2>/dev/null || { tail -20 "$work/$1.log" >&2; die "fluxrelay ($1) died during the run (build: $build_desc)"; }; }
queue_depth() { metric "http://127.0.0.1:$relay_admin/metrics" fluxrelay_queue_depth; }
# fill_queue COUNT CONNECTIONS: posts until COUNT deliveries are queued (the target is down)
fill_queue() {
  local count=$1 connections=$2 threads=$THREADS
  BENCH_POOL="$work/pool.txt" BENCH_PATH=/flux/events BENCH_THREADS=$threads BENCH_DELAY_MS=0 \
    wrk -t"$threads" -c"$connections" -d1h --timeout 10s -s "$work/post.lua" "http://127.0.0.1:$relay_ingest/flux/events" > "$work/fill.out" 2>&1 &
  local wrk_pid=$! start=$SECONDS
  pids+=("$wrk_pid")
  while [ "$(queue_depth)" -lt "$count" ]; do
    relay_alive fill
    [ $((SECONDS - start)) -lt 600 ] || die "could not queue $count deliveries in 10 minutes"
    sleep 0.2
  done
  kill -INT "$wrk_pid"; wait "$wrk_pid" 2>/dev/null || true
}
# Events routes dropped as duplicates (other drops are the 5 routes of the other kinds).
duplicates() {
  curl -s --max-time 5 "http://127.0.0.1:$relay_admin/metrics" \
    | awk 'index($1, "fluxrelay_events_dropped_total{") == 1 && /reason="duplicate"/ {sum += $NF} END {printf "%d\n", sum}'
}

# nginx answering `return 202;`: the ceiling of HTTP here.
start_nginx() {
  nginx_port=$(free_port)
  mkdir -p "$work/nginx"
  cat > "$work/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { return 202; }
  }
}
NGINX
  nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
  nginx_pid=$!
  pids+=("$nginx_pid")
  wait_http "http://127.0.0.1:$nginx_port/flux/events" 202 || die "nginx did not start: $(tail -5 "$work/nginx/error.log")"
}

# adnanh/webhook with an HMAC-SHA256 trigger rule on X-Signature (runs /bin/true per event).
start_webhook() {
  webhook_port=$(free_port)
  cat > "$work/hooks.json" <<JSON
[{
  "id": "flux",
  "execute-command": "/bin/true",
  "http-methods": ["POST"],
  "success-http-response-code": 202,
  "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "$hmac_key",
                             "parameter": {"source": "header", "name": "X-Signature"}}}
}]
JSON
  webhook -hooks "$work/hooks.json" -ip 127.0.0.1 -port "$webhook_port" >"$work/webhook.log" 2>&1 &
  webhook_pid=$!
  pids+=("$webhook_pid")
  local url="http://127.0.0.1:$webhook_port/hooks/flux" line signature body
  line=$(head -1 "$work/pool.txt"); signature=${line%%$'\t'*}; body=${line#*$'\t'}
  for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H "X-Signature: sha256=$signature" --data-binary "$body" "$url")" = 202 ] && break
    sleep 0.05
  done
  # The rule must really verify: a wrong signature is not a 202.
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H "X-Signature: sha256=$signature" --data-binary "$body" "$url")" = 202 ] \
    || die "webhook does not accept a signed event: $(tail -5 "$work/webhook.log")"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -H "X-Signature: sha256=00$signature" --data-binary "$body" "$url")" != 202 ] \
    || die "webhook accepts a wrong signature: its trigger rule is not checked"
}

# A real Alertmanager that keeps alerts and notifies nobody.
am_port=$(free_port)
mkdir -p "$work/am/data"
cat > "$work/am/alertmanager.yml" <<'YAML'
route: {receiver: "null", group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
receivers: [{name: "null"}]
YAML
start_am() {
  prometheus-alertmanager --config.file="$work/am/alertmanager.yml" --storage.path="$work/am/data" \
    --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= --log.level=warn >>"$work/am/log" 2>&1 &
  am_pid=$!
  pids+=("$am_pid")
  wait_http "http://127.0.0.1:$am_port/-/ready" || die "Alertmanager did not start: $(tail -5 "$work/am/log")"
}
am_received() { metric "http://127.0.0.1:$am_port/metrics" alertmanager_alerts_received_total; }

load_start=$(cut -d' ' -f1 /proc/loadavg)
log "binary: $binary_source ($build_desc); ${body_bytes}-byte events, pool of $POOL; load average $load_start"

# ---------------------------------------------------------------------------------------------
# 1. Ingest at increasing concurrency: fluxrelay, nginx, webhook.
start_nginx
start_webhook
ingest_rows=()
declare -A best=() cpu_at=()
duplicates_seen=0
for c in $CONCURRENCY; do
  # The target is a closed port: only ingest and the spool work (deliveries wait, breaker open).
  start_relay "ingest-$c" "http://127.0.0.1:$(free_port)/api/v2/alerts"
  ticks0=$(cpu_ticks "$relay_pid")
  relay=$(run_wrk "http://127.0.0.1:$relay_ingest/flux/events" "$c" "$DURATION")
  ticks1=$(cpu_ticks "$relay_pid")
  relay_alive "ingest-$c"
  duplicates_seen=$((duplicates_seen + $(duplicates)))
  stop_relay "ingest-$c"
  ng=$(run_wrk "http://127.0.0.1:$nginx_port/flux/events" "$c" "$DURATION")
  wh=$(run_wrk "http://127.0.0.1:$webhook_port/hooks/flux" "$c" "$DURATION")
  for r in "$relay" "$ng" "$wh"; do
    [ "$(field "$r" other)" = 0 ] && [ "$(field "$r" socket_errors)" = 0 ] || log "c=$c: answers other than 202 or socket errors: $r"
  done
  rr=$(field "$relay" rps); nr=$(field "$ng" rps); wr=$(field "$wh" rps)
  cpu_us=$(cpu_per $((ticks1 - ticks0)) "$(field "$relay" requests)")
  cpu_at[$c]=$cpu_us
  ingest_rows+=("$(printf '| %s | %.0f | %.2f | %.2f | %s | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %.1f |' \
    "$c" "$rr" "$(field "$relay" p50_ms)" "$(field "$relay" p99_ms)" "$cpu_us" \
    "$nr" "$(field "$ng" p50_ms)" "$(field "$ng" p99_ms)" \
    "$wr" "$(field "$wh" p50_ms)" "$(field "$wh" p99_ms)" \
    "$(awk -v a="$rr" -v b="$nr" 'BEGIN {print a / b}')" "$(awk -v a="$rr" -v b="$wr" 'BEGIN {print a / b}')")")
  log "ingest c=$c: fluxrelay $rr/s, nginx $nr/s, webhook $wr/s"
  # The best row of each server, for the targets.
  if awk -v a="$rr" -v b="${best[relay]:-0}" 'BEGIN {exit !(a > b)}'; then best[relay]=$rr; fi
  if awk -v a="$nr" -v b="${best[nginx]:-0}" 'BEGIN {exit !(a > b)}'; then best[nginx]=$nr; fi
  if awk -v a="$wr" -v b="${best[webhook]:-0}" 'BEGIN {exit !(a > b)}'; then best[webhook]=$wr; fi
done
# Where fluxrelay's CPU goes at PERF_AT connections: a sampled profile over most of a run of its
# own, since sampling with call graphs (dwarf: a Release build has no frame pointers) costs the
# profiled process CPU that the rows above must not include.
if [ "$PERF" != 0 ] && command -v perf >/dev/null; then
  start_relay profile "http://127.0.0.1:$(free_port)/api/v2/alerts"
  perf record -q -F 199 --call-graph dwarf,16384 -p "$relay_pid" -o "$work/perf.data" -- sleep "$(awk -v d="$(seconds "$DURATION")" 'BEGIN {print d * 0.8}')" \
    >/dev/null 2>&1 &
  perf_pid=$!
  run_wrk "http://127.0.0.1:$relay_ingest/flux/events" "$PERF_AT" "$DURATION" >/dev/null
  wait "$perf_pid" || true
  relay_alive profile
  stop_relay profile
  perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null \
    | awk '/^ +[0-9.]+%/ {line = $0; sub(/^ +/, "", line); print substr(line, 1, 150)}' | head -20 > "$work/profile.txt" || true
  # Inclusive: each of fluxrelay's own functions with everything it calls, and the spool's
  # commit and checkpoint; template arguments cut, so a line names the function.
  perf report -i "$work/perf.data" --children --sort sym -g none --stdio 2>/dev/null \
    | awk '/^ +[0-9.]+%/ && $1 + 0 >= 1.5 {
        name = $0; sub(/^.*\[[.k]\] /, "", name)
        while (gsub(/<[^<>]*>/, "", name)) {}
        gsub(/\(anonymous namespace\)::/, "", name); sub(/\[abi:cxx11\]/, "", name)
        if (name ~ /^fluxrelay::|^sqlite3WalFrames|^sqlite3WalCheckpoint|^tcp_sendmsg *$|^tcp_recvmsg *$/)
          printf "%7s  %s\n", $1, substr(name, 1, 110)}' | awk '!seen[$2]++' | head -28 > "$work/profile-inclusive.txt" || true
fi
stop_pid "$webhook_pid"
stop_pid "$nginx_pid"

# measure_ingest NAME → "rps cpu_us p99_ms": fluxrelay at PERF_AT connections (closed target), as
# started by start_relay with whatever RELAY_* is set.
measure_ingest() {
  local name=$1 result t0 t1
  start_relay "$name" "http://127.0.0.1:$(free_port)/api/v2/alerts"
  t0=$(cpu_ticks "$relay_pid")
  result=$(run_wrk "http://127.0.0.1:$relay_ingest/flux/events" "$PERF_AT" "$DURATION")
  t1=$(cpu_ticks "$relay_pid")
  relay_alive "$name"
  stop_relay "$name"
  echo "$(field "$result" rps) $(cpu_per $((t1 - t0)) "$(field "$result" requests)") $(field "$result" p99_ms) $(field "$result" requests)"
}

# The HTTP floor: GET /healthz on the ingest listener, no body, no parse, no spool.
start_relay healthz "http://127.0.0.1:$(free_port)/api/v2/alerts"
ticks0=$(cpu_ticks "$relay_pid")
healthz=$(BENCH_METHOD=GET BENCH_OK_STATUS=200 run_wrk "http://127.0.0.1:$relay_ingest/healthz" "$PERF_AT" "$DURATION")
healthz_cpu=$(cpu_per $(( $(cpu_ticks "$relay_pid") - ticks0 )) "$(field "$healthz" requests)")
relay_alive healthz
stop_relay healthz
log "floor: GET /healthz $(field "$healthz" rps)/s at ${healthz_cpu} µs CPU per request"

# The same ingest with mimalloc preloaded instead of glibc's allocator.
read -r mi_rps mi_cpu mi_p99 _ < <(RELAY_PRELOAD=$mimalloc measure_ingest mimalloc)
log "allocator: mimalloc ${mi_rps}/s at ${mi_cpu} µs per event (glibc: ${cpu_at[$PERF_AT]:-?} µs)"

# The Redis spool, one replica, against a redis-server with its append-only file synced every
# second (the README's set-up); its CPU is reported beside fluxrelay's.
redis_port=$(free_port)
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save '' --appendonly yes \
  --appendfsync everysec --logfile "$work/redis/log" &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis_ticks0=$(cpu_ticks "$redis_pid")
read -r redis_rps redis_cpu redis_p99 redis_requests < <(RELAY_STORAGE="{redis: {url: redis://127.0.0.1:$redis_port/0}}" measure_ingest redis)
redis_server_cpu=$(cpu_per $(( $(cpu_ticks "$redis_pid") - redis_ticks0 )) "$redis_requests")
log "redis spool: ${redis_rps}/s at ${redis_cpu} µs per event in fluxrelay, ${redis_server_cpu} µs in redis-server"

# Each stage timed alone, on one thread (the spool's writer aside), over the same pool.
components_out=
if [ -x "$components" ]; then
  components_out=$("$components" "$work/pool.txt" "$work/flux-hmac" "$work/components-spool" "$PERF_AT" "$redis_port") \
    || die "the components benchmark failed"
  log "components:"$'\n'"$components_out"
fi
stop_pid "$redis_pid"

# Latency at a fixed rate: wrk has no rate limit, so each connection pauses between requests.
start_relay paced "http://127.0.0.1:$(free_port)/api/v2/alerts"
paced_threads=$THREADS; [ "$PACED_CONNECTIONS" -lt "$paced_threads" ] && paced_threads=$PACED_CONNECTIONS
paced=$(run_wrk "http://127.0.0.1:$relay_ingest/flux/events" "$PACED_CONNECTIONS" "$DURATION" \
  "$(awk -v t="$paced_threads" -v r="$RATE" 'BEGIN {print t * 1000 / r}')")
relay_alive paced
stop_relay paced
log "paced: $paced"

# ---------------------------------------------------------------------------------------------
# 2. End to end into a real Alertmanager, then a backlog drained once it comes back.
start_am
start_relay e2e "http://127.0.0.1:$am_port/api/v2/alerts"
am0=$(am_received)
relay_ticks0=$(cpu_ticks "$relay_pid"); am_ticks0=$(cpu_ticks "$am_pid")
e2e=$(run_wrk "http://127.0.0.1:$relay_ingest/flux/events" "$E2E_CONNECTIONS" "$E2E_DURATION")
relay_ticks1=$(cpu_ticks "$relay_pid"); am_ticks1=$(cpu_ticks "$am_pid")
am1=$(am_received)
relay_alive e2e
e2e_seconds=$(seconds "$E2E_DURATION")
e2e_received=$((am1 - am0))
e2e_rate=$(awk -v a="$e2e_received" -v s="$e2e_seconds" 'BEGIN {printf "%.0f", a / s}')
# Who used the two CPUs meanwhile: the share of one CPU, and CPU time per alert.
cpu_share() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v s="$e2e_seconds" 'BEGIN {printf "%.2f", t / hz / s}'; }
cpu_per_alert() { cpu_per "$1" "$e2e_received"; }
e2e_relay_cpu=$(cpu_share $((relay_ticks1 - relay_ticks0))); e2e_relay_us=$(cpu_per_alert $((relay_ticks1 - relay_ticks0)))
e2e_am_cpu=$(cpu_share $((am_ticks1 - am_ticks0))); e2e_am_us=$(cpu_per_alert $((am_ticks1 - am_ticks0)))
left=$(queue_depth)
t0=$(date +%s.%N)
for _ in $(seq 1200); do [ "$(queue_depth)" -eq 0 ] && break; sleep 0.1; done
catch_up=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
log "e2e: accepted $(field "$e2e" accepted), Alertmanager received $e2e_received in $E2E_DURATION; $left queued at the end, gone after ${catch_up}s"
# The alerts per POST fluxrelay sent in that run: its deliveries over its batches.
e2e_batch=$(awk -v d="$(metric "http://127.0.0.1:$relay_admin/metrics" fluxrelay_deliveries_total)" \
  -v b="$(metric "http://127.0.0.1:$relay_admin/metrics" fluxrelay_delivery_batches_total)" \
  'BEGIN {n = b ? d / b : 1; printf "%d", (n < 1 ? 1 : n + 0.5)}')
stop_relay e2e

# What Alertmanager accepts by itself: the same alerts (as fluxrelay builds them from the pool's
# events), in batches of the size fluxrelay sent, posted straight to it by wrk in the same minute.
python3 - "$work/pool.txt" "$work/alerts.txt" "$e2e_batch" <<'PY'
import json, sys
pool, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
def title(text):  # the alertname's Go strings.Title of the reason, for these ASCII reasons
    return text[:1].upper() + text[1:]
alerts = []
for line in open(pool):
    event = json.loads(line.split("\t", 1)[1])
    obj, meta = event["involvedObject"], event["metadata"]
    labels = {k: v for k, v in meta.items() if k != "summary"}
    labels.update(alertname="Flux" + obj["kind"] + title(event["reason"]), severity=event["severity"],
                  reason=event["reason"], kind=obj["kind"], name=obj["name"], namespace=obj["namespace"],
                  reportingcontroller=event["reportingController"])
    alerts.append({"status": "firing", "labels": labels,
                   "annotations": {"message": event["message"], "summary": meta["summary"]},
                   "startsAt": event["timestamp"]})
with open(out, "w") as f:
    for i in range(0, len(alerts) - batch + 1, batch):
        f.write("-\t" + json.dumps(alerts[i:i + batch], separators=(",", ":")) + "\n")
PY
direct_ticks0=$(cpu_ticks "$am_pid"); direct0=$(am_received)
direct=$(BENCH_POOL="$work/alerts.txt" BENCH_OK_STATUS=200 run_wrk "http://127.0.0.1:$am_port/api/v2/alerts" "$E2E_CONNECTIONS" "$E2E_DURATION")
direct_ticks1=$(cpu_ticks "$am_pid"); direct1=$(am_received)
direct_rate=$(awk -v a=$((direct1 - direct0)) -v s="$e2e_seconds" 'BEGIN {printf "%.0f", a / s}')
direct_am_us=$(cpu_per $((direct_ticks1 - direct_ticks0)) $((direct1 - direct0)))
[ "$(field "$direct" other)" = 0 ] || log "Alertmanager answered other than 200 to $(field "$direct" other) batches: $direct"
e2e_ratio=$(awk -v a="$e2e_rate" -v b="$direct_rate" 'BEGIN {printf "%.2f", b ? a / b : 0}')
log "Alertmanager alone: ${direct_rate} alerts/s in batches of ${e2e_batch} (${direct_am_us} µs CPU per alert); fluxrelay end to end ${e2e_rate}/s = ${e2e_ratio} ×"

stop_pid "$am_pid"
start_relay backlog "http://127.0.0.1:$am_port/api/v2/alerts"
fill_queue "$BACKLOG" 32
sleep 1
backlog=$(queue_depth)
start_am
t0=$(date +%s.%N)
am0=$(am_received)
drained=no
for _ in $(seq 3000); do
  [ "$(queue_depth)" -eq 0 ] && { drained=yes; break; }
  relay_alive backlog
  sleep 0.1
done
drain=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
[ $drained = yes ] || drain=">$drain"
am_backlog=$(( $(am_received) - am0 ))
log "backlog: $backlog deliveries drained in ${drain}s (Alertmanager received $am_backlog alerts)"
stop_relay backlog
stop_pid "$am_pid"

# ---------------------------------------------------------------------------------------------
# 3. Memory and start-up.
start_relay memory "http://127.0.0.1:$(free_port)/api/v2/alerts"
sleep 2
rss_idle=$(rss_kb "$relay_pid")
# CPU used while nothing happens (no requests, nothing queued), over 3 s.
ticks0=$(cpu_ticks "$relay_pid"); sleep 3; ticks1=$(cpu_ticks "$relay_pid")
idle_cpu=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t / hz / 3 * 100}')
fill_queue "$QUEUED" 32
ticks0=$(cpu_ticks "$relay_pid")
sleep 2
queued=$(queue_depth)
queued_cpu=$(awk -v t=$(( $(cpu_ticks "$relay_pid") - ticks0 )) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}')
rss_queued=$(rss_kb "$relay_pid")
hwm_queued=$(hwm_kb "$relay_pid")
log "memory: idle ${rss_idle} kB (CPU ${idle_cpu} %), ${queued} queued ${rss_queued} kB (peak ${hwm_queued} kB)"
stop_relay memory
# Idle CPU again with one delivery worker instead of the default 4: tells whether idle CPU
# comes from the workers waking each other.
idle_cpu_one=
if [ "$idle_cpu" -gt 5 ]; then
  start_relay idle-one "http://127.0.0.1:$(free_port)/api/v2/alerts" 1
  sleep 2
  ticks0=$(cpu_ticks "$relay_pid"); sleep 3; ticks1=$(cpu_ticks "$relay_pid")
  idle_cpu_one=$(awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t / hz / 3 * 100}')
  stop_relay idle-one
  log "idle CPU: ${idle_cpu} % with 4 delivery workers, ${idle_cpu_one} % with 1"
fi

# The same two resident sizes with mimalloc preloaded: what its speed costs in memory.
RELAY_PRELOAD=$mimalloc start_relay memory-mimalloc "http://127.0.0.1:$(free_port)/api/v2/alerts"
sleep 2
mi_rss_idle=$(rss_kb "$relay_pid")
fill_queue "$QUEUED" 32
sleep 2
mi_queued=$(queue_depth)
mi_rss_queued=$(rss_kb "$relay_pid")
stop_relay memory-mimalloc
log "memory with mimalloc: idle ${mi_rss_idle} kB, ${mi_queued} queued ${mi_rss_queued} kB"

# exec → /readyz 200, polled every millisecond; with an empty spool and with the queued one.
startup_py=$(cat <<'PY'
import http.client, re, shutil, statistics, subprocess, sys, time
binary, config, runs, fresh = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "fresh"
text = open(config).read()
admin = re.search(r"admin: \{listen: ([0-9.]+):(\d+)\}", text)
data = re.search(r"storage: \{path: ([^}]+)\}", text).group(1)
times = []
for _ in range(runs):
    if fresh:
        shutil.rmtree(data, ignore_errors=True)
    start = time.monotonic()
    child = subprocess.Popen([binary, "serve", "--config", config, "--log-level", "warn"],
                             stderr=subprocess.DEVNULL)
    ready = None
    while time.monotonic() - start < 30 and child.poll() is None:
        try:
            c = http.client.HTTPConnection(admin.group(1), int(admin.group(2)), timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                ready = time.monotonic() - start
                break
        except OSError:
            pass
        time.sleep(0.001)
    child.terminate()
    child.wait(timeout=30)
    if ready is None:
        sys.exit("fluxrelay did not become ready within 30 s")
    times.append(ready * 1000)
print(f"{statistics.median(times):.0f} {max(times):.0f}")
PY
)
read -r ready_fresh ready_fresh_max < <(python3 -c "$startup_py" "$binary" "$work/memory.yaml" "$STARTUP_RUNS" fresh) \
  || die "start-up measurement failed"
# The memory run's spool, with its queued deliveries, is still there (the config points at it).
fill_queue_count=$queued
read -r ready_spool ready_spool_max < <(python3 -c "$startup_py" "$binary" "$work/memory.yaml" "$STARTUP_RUNS" keep) \
  || die "start-up measurement with a full spool failed"
log "ready: ${ready_fresh} ms fresh (max ${ready_fresh_max}), ${ready_spool} ms with ${fill_queue_count} queued (max ${ready_spool_max})"

# ---------------------------------------------------------------------------------------------
# The table, on stdout and in RESULTS.
load_end=$(cut -d' ' -f1 /proc/loadavg)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(free -m | awk '/^Mem:/ {print $2 " MiB total, " $7 " MiB available"}')
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k * 1024 / 1e6}'; }  # kB (KiB) → MB
# check MEASURED OP TARGET → "met" or "missed by N %"
check() {
  awk -v m="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (m == "" || m ~ /^>/) { print "**missed** (did not finish)"; exit }
    ok = (op == ">=") ? (m >= t) : (m <= t)
    if (ok) print "met"
    else if (op == ">=") printf "**missed**: %.0f %% of the target\n", 100 * m / t
    else printf "**missed**: %.1f × the limit\n", m / t
  }'
}
ratio_nginx=$(awk -v a="${best[relay]}" -v b="${best[nginx]}" 'BEGIN {printf "%.2f", a / b}')
ratio_webhook=$(awk -v a="${best[relay]}" -v b="${best[webhook]}" 'BEGIN {printf "%.1f", a / b}')
paced_rps=$(field "$paced" rps); paced_p50=$(field "$paced" p50_ms); paced_p99=$(field "$paced" p99_ms)
loaded_note=
if awk -v l="$load_start" -v n="$(nproc)" 'BEGIN {exit !(l > 0.25 * n)}'; then
  loaded_note="> **Taken on a loaded machine**: the load average was $load_start when the run started and $load_end when it ended (on $(nproc) CPUs), other work competed with every measurement. Ratios within a row are comparable (same minute, same load); absolute numbers are not. Re-run on an idle machine for numbers to quote."
fi

# Facts from this run that bear on a missed target (computed, not opinions).
notes() {
  local best_row cpu_per_req
  echo "- Load average at the start $load_start, at the end $load_end, on $(nproc) CPUs (1.0 per CPU = fully busy)."
  echo "- nginx, the HTTP ceiling, answered ${best[nginx]%.*} requests/s at best: the load generator and loopback"
  echo "  together allow at least that; fluxrelay's best was ${best[relay]%.*}/s."
  for best_row in "${ingest_rows[@]}"; do
    cpu_per_req=$(awk -F'|' '{gsub(/ /, "", $6); print $6}' <<<"$best_row")
    echo "- fluxrelay CPU per accepted request at $(awk -F'|' '{gsub(/ /, "", $2); print $2}' <<<"$best_row") connections: ${cpu_per_req} µs$(
      awk -v u="$cpu_per_req" -v n="$(nproc)" 'BEGIN {if (u > 0) printf " (one CPU: at most %.0f requests/s; %d CPUs: %.0f)", 1e6 / u, n, n * 1e6 / u}')."
  done
  if [ -n "$idle_cpu_one" ]; then
    echo "- fluxrelay uses ${idle_cpu} % of a CPU while idle with the default 4 delivery workers per target and"
    echo "  ${idle_cpu_one} % with \`concurrency: 1\`: idle CPU grows with the number of workers, and it is taken from ingest"
    echo "  and delivery in every measurement above (the relays here have one target, with 4 workers)."
  fi
  echo "- End to end, Alertmanager needs ${e2e_am_us} µs of CPU per alert and fluxrelay ${e2e_relay_us} µs: on $(nproc) CPUs shared"
  echo "  with the load generator, the two together allow at most $(awk -v a="$e2e_am_us" -v r="$e2e_relay_us" -v n="$(nproc)" 'BEGIN {if (a + r > 0) printf "%.0f", n * 1e6 / (a + r)}') alerts/s even if wrk cost nothing."
  echo "- While ${queued} deliveries were queued (target down, no requests), fluxrelay used ${queued_cpu} CPU-seconds in the 2 s after the last one."
}

profile_section=
if [ -s "$work/profile.txt" ]; then
  fence='```'
  profile_section="
Where fluxrelay's CPU went in a profiled ingest run at $PERF_AT connections, apart from the measured
rows (perf, self time, top symbols):

$fence
$(cat "$work/profile.txt")
$fence

The same profile inclusive of callees (each of fluxrelay's functions with all it calls; the
writer thread's transactions, the io threads' requests; percentages overlap along a call chain):

$fence
$(cat "$work/profile-inclusive.txt" 2>/dev/null)
$fence"
fi

report=$(cat <<MD
# fluxrelay benchmark (bench/run.sh)

${loaded_note}

Taken $(date -u +'%Y-%m-%d %H:%M UTC') by \`bench/run.sh\`, everything on loopback on one machine, the
load generator (wrk, $THREADS threads) sharing the CPUs with the server it measures.

**Machine**: ${cpu_model:-unknown CPU}, $(nproc) CPUs (nproc), ${mem_total}, Linux $(uname -r); load average
$load_start at the start, $load_end at the end.
**fluxrelay**: $build_desc, $("$binary" version 2>/dev/null), default \`ioThreads\`, \`storage.sync: normal\` (SQLite, WAL).
**Events**: ${body_bytes}-byte Flux error events, HMAC-SHA256 signed (\`X-Signature\`), $POOL distinct objects and
messages cycled through; 6 routes (one per kind home-ops watches, each with home-ops' 4-pattern
\`exclusionList\`, \`eventSeverity: error\`), dedup \`mode: flux\` with a 1 s window so no event is a
duplicate (events dropped as duplicates during the ingest runs: $duplicates_seen). Every event is stored durably before its 202.
**Peers**: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (\`return 202;\`, 2 workers), webhook $(webhook -version 2>&1 | awk '{print $NF}') (\`payload-hmac-sha256\` rule on
\`X-Signature\`, runs \`/bin/true\` per event, as a webhook hook does), Alertmanager $(prometheus-alertmanager --version 2>&1 | awk 'NR==1 {print $3}').

## Targets

| what | target | measured | |
|---|---|---|---|
| fluxrelay CPU per accepted event, ${PERF_AT} connections, distinct events, one delivery each | ≤ 40 µs | ${cpu_at[$PERF_AT]:-} µs | $(check "${cpu_at[$PERF_AT]:-}" "<=" 40) |
| ingest ÷ nginx \`return 202\` (best requests/s of each) | ≥ 0.25 × | ${ratio_nginx} × (${best[relay]%.*} vs ${best[nginx]%.*}/s) | $(check "$ratio_nginx" ">=" 0.25) |
| ingest ÷ webhook (best requests/s of each) | ≥ 3 × | ${ratio_webhook} × (${best[relay]%.*} vs ${best[webhook]%.*}/s) | $(check "$ratio_webhook" ">=" 3) |
| ingest p99 at ${RATE} events/s, paced | ≤ 2 ms | ${paced_p99} ms (p50 ${paced_p50} ms, achieved ${paced_rps%.*}/s) | $(check "$paced_p99" "<=" 2) |
| fluxrelay CPU per alert, end to end into Alertmanager | ≤ 60 µs | ${e2e_relay_us} µs | $(check "$e2e_relay_us" "<=" 60) |
| end to end ÷ what Alertmanager accepts alone (same alerts, batches of ${e2e_batch}, wrk straight to it) | ≥ 0.9 × | ${e2e_ratio} × (${e2e_rate} vs ${direct_rate} alerts/s) | $(check "$e2e_ratio" ">=" 0.9) |
| Redis spool, one replica: fluxrelay CPU per event (redis-server's beside it) | ≤ 60 µs | ${redis_cpu} µs at ${redis_rps%.*} req/s (redis-server ${redis_server_cpu} µs) | $(check "$redis_cpu" "<=" 60) |
| RSS idle | ≤ 16 MB | $(mb "$rss_idle") MB | $(check "$(mb "$rss_idle")" "<=" 16) |
| RSS with ${queued} undelivered deliveries queued | ≤ 40 MB | $(mb "$rss_queued") MB (peak $(mb "$hwm_queued") MB) | $(check "$(mb "$rss_queued")" "<=" 40) |
| ${backlog}-delivery backlog drained after Alertmanager returns | ≤ 30 s | ${drain} s | $(check "$drain" "<=" 30) |
| exec → /readyz 200, empty spool (median of $STARTUP_RUNS) | ≤ 200 ms | ${ready_fresh} ms (max ${ready_fresh_max}) | $(check "$ready_fresh" "<=" 200) |
| exec → /readyz 200 with the ${queued} queued deliveries in the spool | — | ${ready_spool} ms (max ${ready_spool_max}) | |

## Ingest: signed events → 202, $DURATION per cell

fluxrelay's target is a closed port here, so only ingest and the spool work. CPU = fluxrelay's
user + system CPU time per request (all its threads, including what it uses while idle: see below). Ratios are fluxrelay's requests/s over the peer's.

| connections | fluxrelay req/s | p50 ms | p99 ms | CPU µs/req | nginx req/s | p50 ms | p99 ms | webhook req/s | p50 ms | p99 ms | ÷ nginx | ÷ webhook |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${ingest_rows[@]}")

At a fixed rate of $RATE requests/s (wrk has no rate limit: each wrk thread sends on a fixed schedule,
one request every $(awk -v t="$paced_threads" -v r="$RATE" 'BEGIN {print t * 1000 / r}') ms, from a pool of $PACED_CONNECTIONS connections; a request whose slot has
passed goes at once): ${paced_rps%.*} requests/s achieved, p50 ${paced_p50} ms, p99 ${paced_p99} ms.
Latency is wrk's, from a request's send to its answer; a request that waited for a free connection
is not charged that wait (coordinated omission is not corrected), so an achieved rate below $RATE/s
means the server could not keep up.

## End to end and backlog

- **Sustained**: $E2E_CONNECTIONS connections for $E2E_DURATION posting to fluxrelay with a live Alertmanager as target
  (\`maxBatch: 64\`, default 4 workers): $(field "$e2e" accepted) events accepted ($(field "$e2e" rps | cut -d. -f1)/s),
  Alertmanager received ${e2e_received} alerts in that time (\`alertmanager_alerts_received_total\`) = **${e2e_rate}/s**.
  $left deliveries were still queued when the load stopped; the queue was empty ${catch_up} s later.
  Meanwhile fluxrelay used ${e2e_relay_cpu} of a CPU (${e2e_relay_us} µs per alert, ingest and delivery together),
  Alertmanager ${e2e_am_cpu} (${e2e_am_us} µs per alert); the load generator had the rest of the $(nproc) CPUs.
- **Backlog**: Alertmanager stopped, ${backlog} deliveries queued, Alertmanager started again (same port):
  the queue was empty **${drain} s** after Alertmanager answered ready; it received ${am_backlog} alerts.
  Retry schedule in this run: \`initialInterval: 100ms, maxInterval: 1s\` (the default \`maxInterval\`
  of 5m would add up to that much waiting before the first retry after the outage).

## Each part alone

- **The HTTP floor**: \`GET /healthz\` on the ingest listener at ${PERF_AT} connections (no body, no
  parse, no spool): $(field "$healthz" rps | cut -d. -f1) requests/s, ${healthz_cpu} µs of fluxrelay CPU per request,
  p99 $(field "$healthz" p99_ms) ms.
- **Allocator**: the ingest at ${PERF_AT} connections with mimalloc preloaded (\`LD_PRELOAD\`) instead of
  glibc's malloc: ${mi_rps%.*} requests/s at ${mi_cpu} µs per event (glibc: ${cpu_at[$PERF_AT]:-} µs), p99 ${mi_p99} ms;
  RSS idle $(mb "$mi_rss_idle") MB (glibc $(mb "$rss_idle")), with ${mi_queued} queued $(mb "$mi_rss_queued") MB (glibc $(mb "$rss_queued")).
- **Redis spool**, one replica, redis-server with \`appendonly yes\`, \`appendfsync everysec\`: ${redis_rps%.*} requests/s
  at ${PERF_AT} connections, p99 ${redis_p99} ms; ${redis_cpu} µs of fluxrelay CPU per event, ${redis_server_cpu} µs of redis-server's.
- **Alertmanager alone**: ${direct_rate} alerts/s in batches of ${e2e_batch} from wrk at ${E2E_CONNECTIONS} connections, using
  ${direct_am_us} µs of its CPU per alert (${e2e_am_us} µs when fed by fluxrelay).
- **The stages of ingest, each timed alone** (\`fluxrelay-bench-components\`, one thread calling, the
  spool's writer (or Redis client) thread its own; CPU of that process per event, not redis-server's;
  ${POOL} events, ${PERF_AT} accepts in flight):

\`\`\`
${components_out}
\`\`\`

## Measured context for the misses

$(notes)

${profile_section}

## Memory and start-up

- RSS idle (2 s after ready): $(mb "$rss_idle") MB (10⁶ bytes). CPU while idle (no requests, nothing queued,
  the next 3 s): ${idle_cpu} % of one CPU${idle_cpu_one:+ with the default 4 delivery workers, ${idle_cpu_one} % with \`concurrency: 1\`}.
- RSS with ${queued} undelivered deliveries queued (target down, 2 s after the last one): $(mb "$rss_queued") MB,
  peak (VmHWM) $(mb "$hwm_queued") MB.
- exec → \`/readyz\` 200, polled every millisecond: median ${ready_fresh} ms, max ${ready_fresh_max} ms with an empty spool;
  median ${ready_spool} ms, max ${ready_spool_max} ms with the spool holding ${queued} queued deliveries.
MD
)
printf '%s\n' "$report"
printf '%s\n' "$report" > "$RESULTS"
log "written to $RESULTS"
