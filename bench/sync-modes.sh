#!/usr/bin/env bash
# Acknowledged events per second with storage.sync normal vs full: what group commit buys.
# Each accepted event is durably stored before its 202, so this measures the spool's commit path.
# Usage: bench/sync-modes.sh [path/to/fluxrelay]   (default: the build `make` makes, in build/)
# RelWithDebInfo (-O2), as tested and shipped. (An earlier "-O3 crash" was a stale object file in
# one build folder, built from a header that changed during its compile; bench/run.sh measures a
# clean Release build.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v wrk >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk >/dev/null
fi
binary=${1:-}
if [ -z "$binary" ]; then
  make build >/dev/null
  binary=build/fluxrelay
fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
key=bench-hmac-key
printf '%s' "$key" > "$work/flux-hmac"
body='{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"apps","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"severity":"error","timestamp":"2026-11-27T10:00:00Z","message":"Health check failed after 5m0s: timeout waiting for: [Deployment/default/podinfo status: InProgress]","reason":"HealthCheckFailed","metadata":{"revision":"main@sha1:bd5f1dc5b5be44b16dbb37ab0b8ea0e0fd2b4d07"},"reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-7f5c9d7b9d-x2v6q"}'
signature=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$key" | awk '{print $NF}')
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Signature"] = "sha256=$signature"
LUA

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_mode() {
  local mode=$1 connections=$2 ingest admin
  ingest=$(free_port); admin=$(free_port)
  rm -rf "$work/data-$mode"
  # The target is never reached (nothing listens on port 9): only ingest and the spool work.
  cat > "$work/$mode.yaml" <<YAML
server: {listen: 127.0.0.1:$ingest}
admin: {listen: 127.0.0.1:$admin}
storage: {path: $work/data-$mode, sync: $mode}
sources: [{name: flux, type: flux, path: /flux/events, hmacKeyFile: ./flux-hmac}]
targets: [{name: am, type: alertmanager, address: "http://127.0.0.1:9/api/v2/alerts"}]
routes: [{name: all, source: flux, targets: [am], dedup: {mode: none}}]
YAML
  "$binary" serve --config "$work/$mode.yaml" --log-level warn 2>"$work/$mode.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
  local rps
  rps=$(wrk -t"$(( connections < 2 ? 1 : 2 ))" -c"$connections" -d10s -s "$work/post.lua" "http://127.0.0.1:$ingest/flux/events" | awk '/Requests\/sec/ {print $2}')
  kill -TERM "$pid"; wait "$pid" || true
  echo "$rps"
}

printf '| sync | connections | acknowledged events/s |\n|---|---|---|\n'
for mode in normal full; do
  for connections in 1 32; do
    printf '| %s | %s | %s |\n' "$mode" "$connections" "$(run_mode "$mode" "$connections")"
  done
done
