# syntax=docker/dockerfile:1
# The operator image: one binary for `controller`, `sink` (the PVC output Jobs) and `simulator`.
#   docker build -t llm-batch-operator:dev .
# Built in CI (.github/workflows/e2e.yml); the chart runs it as UID 65532 with a read-only root
# filesystem.

FROM rust:1.95-slim-bookworm AS build
# aws-lc-rs (TLS) builds its C sources with cc and cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang make pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
# Cargo.toml names the benchmarks; deploy/rbac.yaml is compiled in (the start-up RBAC check).
COPY benches benches
COPY deploy/rbac.yaml deploy/rbac.yaml
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin llm-batch-operator \
 && cp target/release/llm-batch-operator /llm-batch-operator

# glibc and CA certificates, no shell, non-root (65532) by default.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="llm-batch-operator" \
      org.opencontainers.image.description="Runs LLM batch work (OpenAI-compatible Batch API) declaratively" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /llm-batch-operator /usr/local/bin/llm-batch-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/llm-batch-operator"]
CMD ["controller"]
