# tsserve's image, in two stages: build with the dev dependencies, run with the production ones only.
#   docker build -t tsserve:0.1.0 .
#   docker run --rm -p 8000:8000 tsserve:0.1.0       # the example serve.yaml, baked in at /etc/tsserve/serve.yaml
# In Kubernetes, `tsserve k8s` writes the manifests: a ConfigMap mounted over /etc/tsserve replaces the baked config
# (see README, "Running on Kubernetes"). Models are baked in under /app (this build context: serve.yaml's folder) or
# come from a mounted volume, named by absolute paths in serve.yaml.
# The GPU variant differs in its base and two packages: FROM nvidia/cuda:12.x-cudnn-runtime with Node.js installed,
# npm install @tensorflow/tfjs-node-gpu, and onnxruntime-node's CUDA provider (install without .npmrc's
# onnxruntime-node-install=skip, which lets its install script fetch the CUDA binaries); then resources.gpus > 0.

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY . .
# npm ci runs `prepare`: the TypeScript build (dist/), the tools, the generated example model, the tsserve link
RUN npm ci --no-audit --no-fund
# the example serve.yaml as the image runs it, its relative paths made absolute under /app
RUN node -e "const fs=require('fs'),yaml=require('js-yaml');const {podConfig}=require('./dist/lib/k8s');fs.writeFileSync('pod-serve.yaml',podConfig(yaml.load(fs.readFileSync('serve.yaml','utf8'))))"

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production ORT_DISABLE_TELEMETRY=1
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# production dependencies only; no script runs (prepare would build, and the build is done); onnxruntime-node's
# binaries for other platforms are dropped (about 220 MB)
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && rm -rf node_modules/onnxruntime-node/bin/napi-v*/darwin node_modules/onnxruntime-node/bin/napi-v*/win32 \
    && npm cache clean --force
COPY --from=build /src/dist dist
COPY --from=build /src/examples/models examples/models
COPY --from=build /src/examples/handlers examples/handlers
COPY --from=build /src/pod-serve.yaml /etc/tsserve/serve.yaml
# the node image's unprivileged user (uid 1000); snapshots of model files go to /tmp
USER node
EXPOSE 8000
ENTRYPOINT ["node", "dist/lib/cli.js"]
CMD ["up", "/etc/tsserve/serve.yaml", "--host", "0.0.0.0"]
