# syntax=docker/dockerfile:1
# Bazaar in one image: `docker run -p 8080:8080 -v bazaar-data:/data -e BAZAAR__AUTH__SIGNING_KEY="$(cat key.pem)" bazaar`.
# The same image runs any module set (`serve --modules orders`) and the migrations (`migrate`).

ARG RUST_VERSION=1.95

# cargo-chef turns the workspace's manifests into a recipe, so the dependencies build in a layer of
# their own that only a Cargo.toml or Cargo.lock change invalidates.
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Build settings the dependencies need too (SQLite's compile-time options).
COPY .cargo/ .cargo/
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin bazaar
COPY . .
# The release profile strips the binary (Cargo.toml: strip = true).
RUN cargo build --release --locked --bin bazaar \
    && mkdir -p /out/data \
    && cp target/release/bazaar /out/bazaar

# glibc, libgcc and CA certificates, no shell, no package manager.
# No HEALTHCHECK: the image has no shell or HTTP client to run one; Kubernetes probes /health/live
# and /health/ready (charts/bazaar), compose needs none.
# checkov:skip=CKV_DOCKER_2:no shell or HTTP client in a distroless image; orchestrators probe /health/*
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
WORKDIR /app
COPY --from=builder /out/bazaar /usr/local/bin/bazaar
COPY config/ /app/config/
# SQLite files (the default database), outside production the generated signing key, and the
# notifications module's .eml files (transport "file"): the root filesystem is read-only.
COPY --from=builder --chown=10001:10001 /out/data /data
ENV BAZAAR_ENV=production \
    BAZAAR_CONFIG_DIR=/app/config \
    BAZAAR__DATABASE__URL="sqlite:///data/{module}.db?mode=rwc" \
    BAZAAR__DATABASE__AUTO_MIGRATE=true \
    BAZAAR__AUTH__SIGNING_KEY_FILE=/data/users-signing-key.pem \
    BAZAAR__NOTIFICATIONS__FILE__DIR=/data/mail
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/bazaar"]
CMD ["serve"]
