#!/usr/bin/env bash
# Runs the libFuzzer targets one after the other (one process each), SECONDS apiece.
#   fuzz/run.sh BUILD_DIR SECONDS [TARGET...]        targets: see fuzz/CMakeLists.txt
# Each starts from fuzz/corpus/<target>/ (the seeds and past findings, replayed first) and writes
# the inputs it discovers to BUILD_DIR/fuzz-corpus/<target>/, never into the repository. A crash
# leaves its input in BUILD_DIR/fuzz-artifacts/<target>/ and makes the script fail.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(flux_event github_webhook http_request config revision dedup)
fi

# Longest input per target: a little over what the code under test accepts or cares about.
max_len() {
  case "$1" in
    http_request) echo 20000 ;;  # the fuzz config's maxBodyBytes (16 KiB) plus headers
    github_webhook) echo 16384 ;;
    revision) echo 512 ;;
    dedup) echo 2048 ;;
    *) echo 8192 ;;
  esac
}

failed=()
for target in "${targets[@]}"; do
  binary=$build/fuzz/fuzz_$target
  [[ -x $binary ]] || { echo "fuzz: $binary is not built" >&2; exit 2; }
  mkdir -p "$build/fuzz-corpus/$target" "$build/fuzz-artifacts/$target" "$build/fuzz-logs"
  log=$build/fuzz-logs/$target.log
  echo "fuzz: $target for ${seconds}s (log: $log)"
  if "$binary" -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$target/" \
      "$build/fuzz-corpus/$target" "fuzz/corpus/$target" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    corpus=$(grep -Eo 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    echo "fuzz: $target ok: ${runs:-?} runs, corpus ${corpus:-?} inputs"
  else
    tail -n 60 "$log"
    echo "fuzz: $target FAILED; the input is in $build/fuzz-artifacts/$target/" >&2
    failed+=("$target")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: findings in ${failed[*]}" >&2
  exit 1
fi
