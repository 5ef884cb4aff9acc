# Shared by scripts/start.sh and scripts/test.sh. Sourced, not run.
# Everything here must work on a fresh Debian machine that has only Node.js 20+.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PNPM_VERSION="$(node -p "require('$ROOT/package.json').packageManager.split('@')[1]")"

log() { printf '\033[1;34m[dubgate]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[dubgate] error:\033[0m %s\n' "$*" >&2; exit 1; }

# pnpm at the version pinned in package.json, without a global install.
# corepack's signature check fails against this registry, so npm exec fetches it.
pnpm() {
  npm_config_loglevel=error npm exec --yes --package="pnpm@$PNPM_VERSION" -- pnpm "$@"
}

# node-gyp must build better-sqlite3 against the local Node headers; pnpm does not
# read npm's nodedir setting, so pass it on explicitly when it is set.
install_dependencies() {
  local nodedir
  nodedir="$(npm_config_loglevel=silent npm config get nodedir 2>/dev/null || true)"
  if [ -n "$nodedir" ] && [ "$nodedir" != "undefined" ] && [ "$nodedir" != "null" ]; then
    export npm_config_nodedir="$nodedir"
  fi
  log "installing dependencies (pnpm $PNPM_VERSION)"
  (cd "$ROOT" && pnpm install --frozen-lockfile --reporter=append-only) || die "pnpm install failed"
}

# Installs a Debian package when a command is missing and we are allowed to.
ensure_command() { # command debian-package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    log "installing $2 (missing: $1)"
    if [ -z "${_APT_UPDATED:-}" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
      _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null || true
  fi
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required: install the Debian package '$2' (apt-get install $2) and run again"
}

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

# Starts a private redis-server on a free port under $1; sets REDIS_URL and REDIS_PID.
# AOF on, noeviction: the settings production uses.
start_private_redis() {
  local dir="$1" port
  ensure_command redis-server redis-server
  mkdir -p "$dir"
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize no \
    --appendonly yes --save "" --maxmemory-policy noeviction \
    --logfile "$dir/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
      export REDIS_URL="redis://127.0.0.1:$port"
      log "private redis-server on $REDIS_URL (pid $REDIS_PID, data in $dir)"
      return 0
    fi
    sleep 0.1
  done
  die "private redis-server did not start; see $dir/redis.log"
}

stop_private_redis() {
  if [ -n "${REDIS_PID:-}" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
}

check_node_version() {
  node -e "const [a,b]=process.versions.node.split('.').map(Number); process.exit(a>20||(a===20&&b>=12)?0:1)" \
    || die "Node.js 20.12 or newer is required (found $(node --version))"
}
