# The ShardBridge CLI image: `docker run shardbridge:local source --config /config/source.yaml`.
# TypeScript runs through tsx (a regular dependency), so there is no build step: the image
# holds the sources and the production dependencies only.
FROM node:20-slim

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first, so that a source change does not re-run `npm ci`. `patches/` is applied
# to node_modules by the postinstall step (patch-package): kafkajs's produce path, see
# docs/benchmark.md.
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# tsconfig.json tells tsx how to read the sources; the three directories are everything the
# CLI imports (tests, docs and the compose files stay out: see .dockerignore).
COPY tsconfig.json ./
COPY shared ./shared
COPY source-connector ./source-connector
COPY sink-connector ./sink-connector

# The official image's unprivileged user. Configuration files are mounted read-only.
USER node

# Metrics and health (GET /metrics, GET /healthz): source 9464, sink 9465 by default.
EXPOSE 9464 9465

ENTRYPOINT ["node", "shared/cli/shardbridge.js"]
CMD ["--help"]
