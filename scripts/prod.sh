#!/usr/bin/env bash
# Production with PM2 (README: "Running it in production"). PM2 is the workspace's own
# (node_modules/.bin/pm2), and its daemon lives under ./data/pm2 unless PM2_HOME is set, so it
# never mixes with another PM2 on the machine.
#
#   build                 install the dependencies and build every process
#   start                 start every process of ecosystem.config.js (waits until each is ready)
#   status                the process table
#   logs [name] [...]     follow the logs (pm2 logs options pass through, e.g. --lines 100)
#   reload [name|all]     rolling restart, one instance after the other, each waited for until ready
#   stop                  stop every process gracefully (SIGTERM, drain) and end the PM2 daemon
#   pm2 <args...>         any other pm2 command with the same PM2_HOME
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

export PM2_HOME="${PM2_HOME:-$ROOT/data/pm2}"
PM2="$ROOT/node_modules/.bin/pm2"
APPS=(api realtime scheduler relay worker-download worker-dub worker-mux)

need_pm2() {
  [ -x "$PM2" ] || die "pm2 is not installed in the workspace: run 'npm run prod:build' first"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  build)
    check_node_version
    install_dependencies
    log "building"
    pnpm exec turbo run build --output-logs=errors-only
    ;;
  start)
    need_pm2
    # PM2 loads the ESM ecosystem.config.js with require(), which these Node.js versions do.
    node -e "const [a,b]=process.versions.node.split('.').map(Number); process.exit(a>22||(a===22&&b>=12)||(a===20&&b>=19)?0:1)" \
      || die "PM2 needs Node.js 20.19+ or 22.12+ to load ecosystem.config.js (found $(node --version))"
    missing=()
    for app in "${APPS[@]}"; do
      [ -f "apps/$app/dist/server.js" ] || missing+=("apps/$app/dist/server.js")
    done
    [ ${#missing[@]} -eq 0 ] || die "not built: ${missing[*]} (run 'npm run prod:build')"
    # The settings first (REDIS_URL, DB_PATH, MEDIA_ROOT...), with a plain message, before any daemon starts.
    node -e "try { require('./ecosystem.config.js') } catch (e) { console.error(e.message); process.exit(1) }" \
      || die "fix the settings above (environment or .env) and run again"
    mkdir -p "$PM2_HOME" "${LOG_DIR:-$ROOT/data/logs}"
    "$PM2" start ecosystem.config.js "$@"
    ;;
  status) need_pm2; exec "$PM2" status "$@" ;;
  logs) need_pm2; exec "$PM2" logs "$@" ;;
  reload)
    need_pm2
    # Processes keep the environment they were started with (their ports among it); restart
    # with `stop` + `start` to apply changed settings.
    [ $# -eq 0 ] && set -- all
    exec "$PM2" reload "$@"
    ;;
  stop) need_pm2; exec "$PM2" kill "$@" ;;
  pm2) need_pm2; exec "$PM2" "$@" ;;
  *) die "usage: scripts/prod.sh build|start|status|logs|reload|stop|pm2 <args>" ;;
esac
