#!/usr/bin/env bash
# The test command: installs what the project needs, builds, starts a private Redis
# (unless REDIS_URL is given), runs every package's tests, and stops what it started.
# Works on a fresh Debian machine that has only Node.js 20+.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1 CI="${CI:-}"

check_node_version
install_dependencies

log "building"
pnpm exec turbo run build --output-logs=errors-only

# Programs the tests run for real: the deployment tests (deploy/) start redis-server, nginx, PM2
# and every process, check configs with promtool, docker-compose and logrotate; the workers run
# ffmpeg and espeak-ng.
ensure_command redis-server redis-server
ensure_command nginx nginx
ensure_command promtool prometheus
ensure_command docker-compose docker-compose
ensure_command logrotate logrotate
ensure_command ffmpeg ffmpeg
ensure_command espeak-ng espeak-ng
# The dashboard's browser tests drive Debian's chromium with playwright-core.
ensure_command chromium chromium

RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dubgate-test.XXXXXX")"
cleanup() {
  stop_private_redis
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${REDIS_URL:-}" ]; then
  start_private_redis "$RUN_DIR/redis"
else
  log "using REDIS_URL from the environment"
fi

rm -f packages/*/.test-results.json apps/*/.test-results.json ./*/.test-results.json
log "running tests"
status=0
pnpm exec turbo run test --concurrency=2 --continue --output-logs=full -- \
  --reporter=default --reporter=json --outputFile.json=.test-results.json || status=$?
node scripts/summarize-tests.mjs || status=1
exit "$status"
