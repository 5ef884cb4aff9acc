#!/usr/bin/env bash
# Runs the tests N times in a row and prints one line per run and the totals, to prove that the
# suite passes every time (a flaky test shows up as a run with failures, named).
#
#   scripts/soak-tests.sh N                 the whole test command (npm test), N times
#   scripts/soak-tests.sh N scheduler api   these packages' tests, N times each, one private Redis
#
# A package is a folder (apps/scheduler), a short name (scheduler, e2e) or a package name
# (@dubgate/scheduler). Logs of failed runs are kept under $SOAK_DIR (default: a temp folder).
# With packages, REDIS_URL is used when set (else a private redis-server); SOAK_BUILD=0 skips
# the build before the runs.
# Exit code 0 only when every run passed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

runs="${1:-}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/soak-tests.sh N [package ...]"
shift
SOAK_DIR="${SOAK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/dubgate-soak.XXXXXX")}"
mkdir -p "$SOAK_DIR"
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

package_dir() { # name -> folder holding its package.json
  local name="${1#@dubgate/}"
  for dir in "$1" "apps/$name" "packages/$name" "$name"; do
    [ -f "$dir/package.json" ] && [ -d "$dir/test" ] && { echo "${dir%/}"; return 0; }
  done
  die "no package with tests named '$1'"
}

# The vitest JSON report: "passed failed skipped" and the names of the failed tests.
read_report() {
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const failed = r.testResults.flatMap((f) => f.assertionResults.filter((a) => a.status === "failed").map((a) => `${f.name.replace(process.cwd() + "/", "")} > ${a.fullName}`));
    const broken = r.testResults.filter((f) => f.status === "failed" && !f.assertionResults.some((a) => a.status === "failed")).map((f) => `${f.name.replace(process.cwd() + "/", "")} (the file failed: ${(f.message || "").split("\n")[0]})`);
    console.log(r.numPassedTests, r.numFailedTests + broken.length, r.numPendingTests + (r.numTodoTests ?? 0));
    for (const name of [...failed, ...broken]) console.log(name);
  ' "$1"
}

total_runs=0 failed_runs=0 total_passed=0 total_failed=0
report_run() { # label passed failed seconds log [failed names...]
  local label="$1" p="$2" f="$3" s="$4" logf="$5"
  shift 5
  total_runs=$((total_runs + 1)) total_passed=$((total_passed + p)) total_failed=$((total_failed + f))
  if [ "$f" = "0" ]; then
    printf 'run %s: %s passed, 0 failed, %ss\n' "$label" "$p" "$s"
    rm -f "$logf"
  else
    failed_runs=$((failed_runs + 1))
    printf 'run %s: %s passed, %s failed, %ss (log: %s)\n' "$label" "$p" "$f" "$s" "$logf"
    for name in "$@"; do printf '    failed: %s\n' "$name"; done
  fi
}

soak_whole_command() {
  for i in $(seq 1 "$runs"); do
    local logf="$SOAK_DIR/run-$i.log" start=$SECONDS rc=0
    bash scripts/test.sh >"$logf" 2>&1 || rc=$?
    local line p=0 f=0
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logf" | tail -1 || true)"
    if [ -n "$line" ]; then
      p="$(echo "$line" | awk '{print $1}')" f="$(echo "$line" | awk '{print $3}')"
    fi
    # A non-zero exit without failed tests (a build error, a missing report) is a failed run too.
    [ "$rc" != "0" ] && [ "$f" = "0" ] && f=1
    mapfile -t names < <(grep -E '^ *(FAIL|×) ' "$logf" | sed 's/^ *//' | sort -u | head -20)
    report_run "$i/$runs" "$p" "$f" "$((SECONDS - start))" "$logf" "${names[@]}"
  done
}

soak_packages() {
  local dirs=() d
  for name in "$@"; do dirs+=("$(package_dir "$name")"); done
  [ -d node_modules ] || install_dependencies >/dev/null
  # Everything, not only the packages' dependencies: e2e, cli and web start the built system.
  if [ "${SOAK_BUILD:-1}" != "0" ]; then
    log "building"
    pnpm exec turbo run build --output-logs=errors-only >/dev/null
  fi
  trap stop_private_redis EXIT
  [ -n "${REDIS_URL:-}" ] || start_private_redis "$SOAK_DIR/redis"
  for i in $(seq 1 "$runs"); do
    for d in "${dirs[@]}"; do
      local logf="$SOAK_DIR/$(basename "$d")-$i.log" json="$SOAK_DIR/$(basename "$d")-$i.json" start=$SECONDS
      (cd "$d" && "$ROOT/node_modules/.bin/vitest" run --reporter=default --reporter=json --outputFile.json="$json") >"$logf" 2>&1 || true
      local p=0 f=1 s=0 names=()
      if [ -f "$json" ]; then
        mapfile -t out < <(read_report "$json")
        read -r p f s <<<"${out[0]}"
        names=("${out[@]:1}")
        rm -f "$json"
      else
        names=("no report: vitest did not finish")
      fi
      report_run "$i/$runs $d" "$p" "$f" "$((SECONDS - start))" "$logf" "${names[@]}"
    done
  done
}

if [ "$#" -eq 0 ]; then soak_whole_command; else soak_packages "$@"; fi
printf '%s runs: %s passed, %s failed (%s runs with failures)\n' "$total_runs" "$total_passed" "$total_failed" "$failed_runs"
[ "$failed_runs" = "0" ]
