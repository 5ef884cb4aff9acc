#!/usr/bin/env bash
# The start command: installs, builds, and runs the whole system in the foreground.
# Uses a private redis-server under ./data/redis unless REDIS_URL is set. Ctrl-C stops all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

check_node_version
install_dependencies
log "building"
pnpm exec turbo run build --output-logs=errors-only

# The reference workers run these programs.
ensure_command ffmpeg ffmpeg
ensure_command espeak-ng espeak-ng

mkdir -p data
trap stop_private_redis EXIT
if [ -z "${REDIS_URL:-}" ]; then
  start_private_redis "$ROOT/data/redis"
fi

# run-all.mjs forwards SIGINT/SIGTERM to every process and waits for them to drain.
node scripts/run-all.mjs
