# proctor's container image: a release build in the Rust image, copied with
# only the shared libraries it links (libpq and its dependencies) onto a
# distroless base: no shell, no package manager, CA certificates included,
# non-root (uid 65532). The HEALTHCHECK is the binary itself
# (`proctor healthcheck`), since there is no shell or grpcurl to run; it
# probes the PROCTOR_LISTEN port, so overriding the port keeps it right.
#
#   docker build -t proctor:dev .
#   docker run --rm -p 50051:50051 -e PROCTOR_DATABASE_URL=postgres://... proctor:dev
#
# Builder and runtime are the same Debian release (bookworm = debian12), so
# the libraries copied across match the base image's glibc.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm
# The three bases, by name; docker/check-image.sh points them at local
# stand-ins where no container registry answers.
ARG RUST_IMAGE=rust:${RUST_VERSION}-${DEBIAN}
ARG DEBIAN_IMAGE=debian:${DEBIAN}-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole context (see .dockerignore): Cargo checks every target the
# manifest declares, tests and benches included, even for one binary.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin proctor \
 && install -D -m 0755 target/release/proctor /out/usr/local/bin/proctor \
 && strip /out/usr/local/bin/proctor

# Collects the shared libraries the binary needs (libpq, OpenSSL, Kerberos,
# LDAP, ...) with their paths, and an empty data folder.
FROM ${DEBIAN_IMAGE} AS runtime-libs
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq5 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/ /out/
# Each library lands in its real folder (/usr/lib/<arch>), under its soname;
# glibc and libgcc come from the base image itself, never from here, so the
# loader and libc always match. CI builds and runs this image:
# docker/check-image.sh.
COPY docker/collect-libs.sh /usr/local/bin/collect-libs
RUN collect-libs /out/usr/local/bin/proctor /out && mkdir -p /data

FROM ${RUNTIME_IMAGE}
# Keep in step with Cargo.toml and the chart's appVersion (CI checks all
# three against the binary's --version: docker/check-image.sh).
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="proctor" \
      org.opencontainers.image.description="Processor-compliance gRPC service: controller instructions, sub-processors, screening, subject requests, breaches, audit" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=runtime-libs /out/ /
# COPY makes files root-owned unless told otherwise; this folder is the
# runtime user's.
COPY --from=runtime-libs --chown=65532:65532 /data/ /var/lib/proctor/
# In a container: listen on every interface, JSON logs, data in the one
# writable folder (mount a volume or emptyDir there when the root is read-only).
ENV PROCTOR_LISTEN=0.0.0.0:50051 \
    PROCTOR_LOG_FORMAT=json \
    PROCTOR_DATA_DIR=/var/lib/proctor
WORKDIR /var/lib/proctor
USER 65532:65532
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/proctor", "healthcheck", "--timeout-seconds", "2"]
ENTRYPOINT ["/usr/local/bin/proctor"]
CMD ["serve"]
