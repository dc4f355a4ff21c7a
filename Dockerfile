# The ShardBridge CLI image: `docker run --init shardbridge:local source --config /config/source.yaml`
# (--init: node as PID 1 ignores the signals it has no handler for, Ctrl-C among them;
# docker-compose.yml sets `init: true` on its services).
# Two stages: the first compiles the TypeScript (`npm run build`, tsc into dist/); the image
# holds the compiled code and the production dependencies only. Running compiled rather than
# through tsx saves the connectors the start-up compile and tsx's module-loader thread (about
# 30 MB resident each).
FROM node:20-slim AS build

WORKDIR /app
# `patches/` is applied to node_modules by the postinstall step (patch-package): kafkajs's
# produce path, see docs/architecture.md.
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY shared ./shared
COPY source-connector ./source-connector
COPY sink-connector ./sink-connector
RUN npm run build

FROM node:20-slim

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first, so that a source change does not re-run `npm ci`.
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# dist/ is everything the CLI imports (tests, docs and the compose files stay out: see .dockerignore).
COPY --from=build /app/dist ./dist

# The official image's unprivileged user. Configuration files are mounted read-only.
USER node

# Metrics and health (GET /metrics, GET /healthz): source 9464, sink 9465 by default.
EXPOSE 9464 9465

ENTRYPOINT ["node", "--enable-source-maps", "dist/shared/cli/entry.js"]
CMD ["--help"]
