# syntax=docker/dockerfile:1
# One image per dubgate process, each a target of this file (docker-compose.yml builds them all):
#   docker build --target api -t dubgate/api .
# Every image runs the command PM2 and the tests run, `node apps/<name>/dist/server.js`, from
# /app, as the unprivileged user `node`, with tini as PID 1 (signals forwarded, zombies reaped).
# Only the worker images carry ffmpeg / espeak-ng.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---------------------------------------------------------------------------------------------
# Build: the whole workspace with its dev dependencies, then one pruned folder per process.
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN npm install -g pnpm@10.34.9
# better-sqlite3 compiles against this image's own Node headers (no header download).
ENV CI=true npm_config_nodedir=/usr/local TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
WORKDIR /src
# The store is filled from the lockfile alone, so this layer is reused until the lockfile changes.
COPY pnpm-lock.yaml pnpm-workspace.yaml .npmrc ./
RUN pnpm fetch
COPY . .
RUN pnpm install --frozen-lockfile --offline \
 && pnpm exec turbo run build --output-logs=errors-only
# `pnpm deploy` writes, per process, its package with dist/ and only its production
# dependencies (the workspace packages it uses copied in): nothing else of the monorepo.
RUN set -e; for app in api realtime scheduler relay worker-download worker-dub worker-mux; do \
      pnpm --filter "@dubgate/$app" deploy --prod --legacy "/out/$app"; \
      rm -rf "/out/$app/src" "/out/$app/test" "/out/$app/vitest.config.ts" "/out/$app"/tsconfig*.json; \
    done

# ---------------------------------------------------------------------------------------------
# Runtime base: Node, tini, a non-root user, the data and media mount points.
FROM ${NODE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data /media \
 && chown node:node /data /media
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    DB_PATH=/data/gateway.db \
    MEDIA_ROOT=/media
WORKDIR /app
ENTRYPOINT ["/usr/bin/tini", "--"]

# Workers: the media tools their stages run.
FROM runtime AS media-runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

FROM media-runtime AS dub-runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng \
 && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------
# The processes. The code stays owned by root (read-only for the process); it runs as `node`.
FROM runtime AS api
COPY --from=build /out/api /app/apps/api
USER node
EXPOSE 3000
CMD ["node", "apps/api/dist/server.js"]

FROM runtime AS realtime
COPY --from=build /out/realtime /app/apps/realtime
USER node
EXPOSE 3001
CMD ["node", "apps/realtime/dist/server.js"]

FROM runtime AS scheduler
COPY --from=build /out/scheduler /app/apps/scheduler
USER node
EXPOSE 3002
CMD ["node", "apps/scheduler/dist/server.js"]

FROM runtime AS relay
COPY --from=build /out/relay /app/apps/relay
USER node
EXPOSE 3003
CMD ["node", "apps/relay/dist/server.js"]

FROM media-runtime AS worker-download
# yt-dlp for web pages (plain http(s) media URLs need no tool).
RUN apt-get update \
 && apt-get install -y --no-install-recommends yt-dlp \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/worker-download /app/apps/worker-download
USER node
EXPOSE 3011
CMD ["node", "apps/worker-download/dist/server.js"]

FROM dub-runtime AS worker-dub
COPY --from=build /out/worker-dub /app/apps/worker-dub
USER node
EXPOSE 3012
CMD ["node", "apps/worker-dub/dist/server.js"]

FROM media-runtime AS worker-mux
COPY --from=build /out/worker-mux /app/apps/worker-mux
USER node
EXPOSE 3013
CMD ["node", "apps/worker-mux/dist/server.js"]
