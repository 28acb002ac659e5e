#!/usr/bin/env bash
# Runs fluxrelay in the foreground with config/example.yaml, next to a local Alertmanager
# on 127.0.0.1:9093 that is stopped when fluxrelay exits.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
binary=${1:-$root/build/fluxrelay}
state=${FLUXRELAY_RUN_DIR:-$root/build/run}
am_listen=127.0.0.1:9093

if [[ ! -x "$binary" ]]; then
  echo "run-local: $binary not built; run 'make build'" >&2
  exit 1
fi

cd "$root"
# Debian's package may already run Alertmanager as a service on this port: use that one.
if curl -fsS "http://$am_listen/-/ready" >/dev/null 2>&1; then
  echo "run-local: using the Alertmanager already running on http://$am_listen" >&2
  exec "$binary" serve --config "$root/config/example.yaml"
fi

alertmanager=$(command -v prometheus-alertmanager || true)
if [[ -z "$alertmanager" && -x /usr/bin/prometheus-alertmanager ]]; then
  alertmanager=/usr/bin/prometheus-alertmanager
fi
if [[ -z "$alertmanager" ]]; then
  echo "run-local: prometheus-alertmanager not found; run 'make deps'" >&2
  exit 1
fi

mkdir -p "$state/alertmanager"
# An empty --cluster.listen-address disables clustering: no gossip port, no peers to wait for.
"$alertmanager" \
  --config.file="$root/config/alertmanager.yml" \
  --storage.path="$state/alertmanager" \
  --web.listen-address="$am_listen" \
  --cluster.listen-address= \
  >"$state/alertmanager.log" 2>&1 &
am_pid=$!

ready=0
for _ in $(seq 1 300); do
  if ! kill -0 "$am_pid" 2>/dev/null; then
    break
  fi
  if curl -fsS "http://$am_listen/-/ready" >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ $ready -ne 1 ]]; then
  echo "run-local: Alertmanager did not become ready; its log:" >&2
  cat "$state/alertmanager.log" >&2
  kill "$am_pid" 2>/dev/null || true
  exit 1
fi
echo "run-local: Alertmanager on http://$am_listen (log: $state/alertmanager.log)" >&2

# After exec this shell's PID is fluxrelay's: a watcher stops Alertmanager once it has exited
# (gone, or a zombie its parent has not reaped yet).
relay_pid=$$
(
  running() {
    local stat
    stat=$(cat "/proc/$relay_pid/stat" 2>/dev/null) || return 1
    [[ "${stat##*) }" != Z* ]]
  }
  while running; do sleep 0.5; done
  kill "$am_pid" 2>/dev/null || true
) </dev/null >/dev/null 2>&1 &

exec "$binary" serve --config "$root/config/example.yaml"
