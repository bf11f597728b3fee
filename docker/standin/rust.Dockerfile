# Stand-in for the official rust:<version>-bookworm image, for machines that
# can reach Debian's archive and crates.io but not the container registries:
# Debian 12 with the C toolchain the official image carries (from
# buildpack-deps) and the Rust toolchain given as the build context, laid
# out as the official image lays it out (RUSTUP_HOME, CARGO_HOME, PATH),
# trusting the certificate authorities the building machine added (ca/).
# Only docker/check-image.sh uses it, and only when the real base cannot be
# pulled.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates gcc libc6-dev make pkg-config git curl \
 && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ARG TOOLCHAIN=stable-x86_64-unknown-linux-gnu
COPY bin/ /usr/local/rustup/toolchains/${TOOLCHAIN}/bin/
COPY lib/ /usr/local/rustup/toolchains/${TOOLCHAIN}/lib/
COPY libexec/ /usr/local/rustup/toolchains/${TOOLCHAIN}/libexec/
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin \
 && for tool in cargo rustc rustdoc; do \
      ln -s "/usr/local/rustup/toolchains/${TOOLCHAIN}/bin/$tool" "/usr/local/cargo/bin/$tool"; \
    done \
 && cargo --version && rustc --version
