#!/usr/bin/env bash
# fluxrelay's soak benchmark (a benchmark, not a test: make test does not run it). For
# SOAK_MINUTES at SOAK_RATE requests/s, open loop, signed Flux events (errors and infos over many
# objects) and signed GitHub push webhooks go into a relay built from this tree, which delivers
# them to a real Alertmanager (Debian's prometheus-alertmanager) and to a Flux Receiver stand-in.
# Alertmanager is stopped (SIGSTOP) for SOAK_AM_DOWN seconds every SOAK_AM_PERIOD seconds, so
# deliveries queue and retry. Every SOAK_SAMPLE seconds: the relay's RSS, open FDs and CPU, the
# interval's p99 latency, the queue depth (fluxrelay_queue_depth). At the end: events lost (a 2xx
# whose alert or reconcile never arrived) and duplicate deliveries, counted at the peers; the RSS
# and FD slopes (least squares after the warm-up). Written to bench/soak.md, with the plots
# (gnuplot) in bench/soak/*.png and the samples in bench/soak/samples.csv.
#
#   bench/soak.sh                          20 minutes against build/fluxrelay (brought up to date first)
#   SOAK_MINUTES=2 FLUXRELAY_BIN=path/to/fluxrelay bench/soak.sh      a quick try
#
# Environment (defaults in brackets):
#   FLUXRELAY_BIN            the relay to measure instead of build/fluxrelay (copied first: a rebuild
#                            mid-run changes nothing)
#   SOAK_MINUTES [20]        how long the load runs
#   SOAK_RATE [300]          requests/s, open loop
#   SOAK_AM_PERIOD [120]     seconds between Alertmanager stops; SOAK_AM_DOWN [30] seconds stopped each time;
#                            SOAK_AM_FIRST [60] the first stop (a 2-minute run has one stop at 60–90 s);
#                            SOAK_AM_DOWN=0: never stopped
#   SOAK_SAMPLE [5]          seconds between samples
#   SOAK_WARMUP [120, at most a quarter of the run]  seconds left out of the slopes
#   SOAK_DRAIN_TIMEOUT [600] seconds to wait after the load for the queues to empty
#   SOAK_OUT [bench]         where soak.md and soak/ go
#   SOAK_KEEP                set: keep the scratch folder (configs, logs, the spool) and say where
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

SOAK_MINUTES=${SOAK_MINUTES:-20}
SOAK_RATE=${SOAK_RATE:-300}
SOAK_AM_PERIOD=${SOAK_AM_PERIOD:-120}
SOAK_AM_DOWN=${SOAK_AM_DOWN:-30}
SOAK_AM_FIRST=${SOAK_AM_FIRST:-60}
SOAK_SAMPLE=${SOAK_SAMPLE:-5}
SOAK_DRAIN_TIMEOUT=${SOAK_DRAIN_TIMEOUT:-600}
SOAK_OUT=${SOAK_OUT:-bench}
duration_s=$(awk -v m="$SOAK_MINUTES" 'BEGIN {printf "%d", m * 60}')
if [ -z "${SOAK_WARMUP:-}" ]; then
  SOAK_WARMUP=$(( duration_s / 4 < 120 ? duration_s / 4 : 120 ))
fi

log() { printf 'soak: %s\n' "$*" >&2; }
die() { printf 'soak: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools: Debian's packages, installed only when missing.
need_packages=()
command -v prometheus-alertmanager >/dev/null || need_packages+=(prometheus-alertmanager)
command -v gnuplot >/dev/null || need_packages+=(gnuplot-nox)
command -v node >/dev/null || need_packages+=(nodejs)
command -v curl >/dev/null || need_packages+=(curl)
command -v python3 >/dev/null || need_packages+=(python3)
if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]}"
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi
for tool in prometheus-alertmanager gnuplot node curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found after installing; install it by hand (Debian: see bench/soak.sh)"
done

# ---------------------------------------------------------------------------------------------
# The relay.
if [ -n "${FLUXRELAY_BIN:-}" ]; then
  binary=$FLUXRELAY_BIN
else
  # build/ as make build configures it; ninja brings the binary up to date with this tree.
  binary=$repo/build/fluxrelay
  scripts/install-deps.sh --build >/dev/null
  [ -f build/build.ninja ] || cmake -G Ninja -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  log "building build/fluxrelay"
  ninja -C build -j "${JOBS:-$(nproc)}" fluxrelay >/dev/null
fi
[ -x "$binary" ] || die "no fluxrelay binary at $binary"
binary=$(readlink -f "$binary")
relay_version=$("$binary" version)
case $binary in
  "$repo"/*) binary_desc=${binary#"$repo"/} ;;
  *) binary_desc=$(basename "$binary") ;;
esac

# ---------------------------------------------------------------------------------------------
# Scratch space and the processes we start; all gone on exit (a stopped Alertmanager is woken
# first, or it would not see its SIGTERM).
work=$(mktemp -d /tmp/fluxrelay-soak.XXXXXX)
cp "$binary" "$work/fluxrelay"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "${SOAK_KEEP:-}" ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {  # URL: until it answers 200 (20 s)
  for _ in $(seq 400); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)" = 200 ] && return 0
    sleep 0.05
  done
  return 1
}

# Alertmanager: keeps every alert (no receiver does anything), resolve_timeout longer than the run
# and its drain, so that no alert of the run has ended when they are counted; one group flushed
# rarely, so that hundreds of thousands of alerts cost it little between the counts.
mkdir -p "$work/am/data"
cat > "$work/am/alertmanager.yml" <<YAML
# Written by bench/soak.sh.
global:
  resolve_timeout: $(( duration_s / 60 + SOAK_DRAIN_TIMEOUT / 60 + 60 ))m
route:
  receiver: "null"
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 24h
receivers:
  - name: "null"
YAML
am_port=$(free_port)
prometheus-alertmanager --config.file="$work/am/alertmanager.yml" --storage.path="$work/am/data" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= --log.level=warn \
  > "$work/am/log" 2>&1 &
am_pid=$!
pids+=("$am_pid")
wait_http "http://127.0.0.1:$am_port/-/ready" || { tail -20 "$work/am/log" >&2; die "Alertmanager did not start"; }

# The Flux Receiver stand-in.
printf '%s' "$(python3 -c 'import secrets; print(secrets.token_hex(20))')" > "$work/receiver-token"
node bench/soak-load.mjs receiver "$work/receiver-port" "$work/receiver-token" > "$work/receiver.log" 2>&1 &
pids+=("$!")
for _ in $(seq 200); do [ -s "$work/receiver-port" ] && break; sleep 0.05; done
[ -s "$work/receiver-port" ] || die "the Receiver stand-in did not start"
receiver_url="http://127.0.0.1:$(cat "$work/receiver-port")"

# fluxrelay: Flux events of every severity to Alertmanager, pushes to main to the Receiver.
python3 -c 'import secrets; print(secrets.token_hex(20))' > "$work/flux-hmac"
python3 -c 'import secrets; print(secrets.token_hex(20))' > "$work/github-secret"
chmod 600 "$work/receiver-token" "$work/flux-hmac" "$work/github-secret"
relay_port=$(free_port)
admin_port=$(free_port)
cat > "$work/fluxrelay.yaml" <<YAML
# Written by bench/soak.sh.
server:
  listen: 127.0.0.1:$relay_port
admin:
  listen: 127.0.0.1:$admin_port
storage:
  path: ./data
sources:
  - {name: flux, type: flux, path: /flux/events, hmacKeyFile: ./flux-hmac}
  - {name: github, type: github, path: /github/webhook, secretFile: ./github-secret, events: [ping, push]}
targets:
  - name: alertmanager
    type: alertmanager
    address: http://127.0.0.1:$am_port/api/v2/alerts
    timeout: 5s
    retry: {initialInterval: 1s, maxInterval: 30s}
  - name: receiver
    type: flux-receiver
    address: $receiver_url
    receiver: {name: github-webhook, namespace: flux-system}
    tokenFile: ./receiver-token
    timeout: 5s
    retry: {initialInterval: 1s, maxInterval: 30s}
routes:
  - {name: flux-events, source: flux, targets: [alertmanager]}
  - {name: reconcile-on-push, source: github, events: [push], branches: [main], targets: [receiver]}
YAML
"$work/fluxrelay" check-config "$work/fluxrelay.yaml" >/dev/null
(cd "$work" && exec ./fluxrelay serve --config fluxrelay.yaml --log-level warn) > "$work/relay.log" 2>&1 &
relay_pid=$!
pids+=("$relay_pid")
wait_http "http://127.0.0.1:$admin_port/readyz" || { tail -20 "$work/relay.log" >&2; die "fluxrelay did not get ready"; }

# ---------------------------------------------------------------------------------------------
# The load, the samples, the count.
out=$SOAK_OUT
mkdir -p "$out/soak"
cat > "$work/settings.json" <<JSON
{
  "relayUrl": "http://127.0.0.1:$relay_port",
  "adminUrl": "http://127.0.0.1:$admin_port",
  "fluxPath": "/flux/events",
  "githubPath": "/github/webhook",
  "relayPid": $relay_pid,
  "relayVersion": "$relay_version",
  "relayBinaryDesc": "$binary_desc",
  "alertmanagerUrl": "http://127.0.0.1:$am_port",
  "alertmanagerPid": $am_pid,
  "receiverUrl": "$receiver_url",
  "fluxKeyFile": "$work/flux-hmac",
  "githubSecretFile": "$work/github-secret",
  "rate": $SOAK_RATE,
  "durationS": $duration_s,
  "sampleS": $SOAK_SAMPLE,
  "warmupS": $SOAK_WARMUP,
  "amPeriodS": $SOAK_AM_PERIOD,
  "amDownS": $SOAK_AM_DOWN,
  "amFirstS": $SOAK_AM_FIRST,
  "drainTimeoutS": $SOAK_DRAIN_TIMEOUT,
  "maxSockets": 512,
  "requestTimeoutMs": 30000,
  "samples": "$work/samples.csv",
  "summary": "$work/summary.json"
}
JSON
log "relay pid $relay_pid on :$relay_port (admin :$admin_port), Alertmanager pid $am_pid on :$am_port, receiver $receiver_url"
log "$SOAK_MINUTES minutes at $SOAK_RATE requests/s; Alertmanager stopped ${SOAK_AM_DOWN}s every ${SOAK_AM_PERIOD}s from ${SOAK_AM_FIRST}s"
node bench/soak-load.mjs load "$work/settings.json"
kill -0 "$relay_pid" 2>/dev/null || { tail -20 "$work/relay.log" >&2; die "fluxrelay exited during the run"; }

cp "$work/samples.csv" "$work/summary.json" "$out/soak/"

# ---------------------------------------------------------------------------------------------
# Plots: one PNG per metric, Alertmanager's stops shaded.
stops=$(node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const ev = r.amEvents; const end = r.loadSeconds;
  for (let i = 0; i < ev.length; i++) if (ev[i].action === "stop") {
    const c = ev.slice(i + 1).find((e) => e.action === "cont");
    console.log(`set object rect from ${ev[i].t},graph 0 to ${c ? c.t : end},graph 1 back fc rgb "#dddddd" fs solid noborder`);
  }' "$work/summary.json")
plot() {  # FILE TITLE YLABEL PLOT-CLAUSES
  gnuplot <<GP
set terminal pngcairo size 1000,360 font "sans,10" noenhanced
set output "$out/soak/$1"
set datafile separator ","
set key below horizontal
set title "$2"
set xlabel "seconds since the load started"
set ylabel "$3"
set grid
set xrange [0:*]
set yrange [0:*]
$stops
plot $4
GP
}
csv="$out/soak/samples.csv"
plot rss.png "fluxrelay resident memory" "MB" "'$csv' using 1:11 with lines lw 2 title 'RSS'"
plot fds.png "fluxrelay open file descriptors" "FDs" \
  "'$csv' using 1:12 with lines lw 2 title 'open FDs', '' using 1:21 with lines lw 2 title 'less the generator connections', '' using 1:20 with lines title 'generator connections'"
plot p99.png "ingest latency p99 per ${SOAK_SAMPLE} s interval" "ms" \
  "'$csv' using 1:7 with lines lw 2 title 'p99 from scheduled send', '' using 1:8 with lines title 'p99 from socket send', '' using 1:6 with lines title 'p50'"
plot queue.png "deliveries queued (fluxrelay_queue_depth)" "deliveries" \
  "'$csv' using 1:13 with lines lw 2 title 'alertmanager', '' using 1:14 with lines lw 2 title 'receiver'"

node bench/soak-load.mjs report "$work/summary.json" > "$out/soak.md"
log "written to $out/soak.md and $out/soak/"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const d = r.duplicates.alertmanager + r.duplicates.receiver;
  console.error(`soak: ${r.achievedSendRate.toFixed(1)} requests/s; sent ${r.sent}, accepted ${r.accepted}, 503 ${r.rejected503}; lost ${r.lost}, duplicates ${d}; RSS ${r.rss.slopeMbPerHour.toFixed(2)} MB/h, FDs ${r.fds.slopePerHour.toFixed(1)}/h (${r.fds.otherSlopePerHour.toFixed(1)}/h less the generator connections); p50 ${r.latencyMs.p50.toFixed(2)} ms, p99 ${r.latencyMs.p99.toFixed(2)} ms`);
  process.exit(r.lost > 0 || !r.drained ? 1 : 0);' "$work/summary.json"
