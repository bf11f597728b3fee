#!/bin/sh
# Builds local stand-ins for the Dockerfile's three base images, for a
# machine that reaches Debian's archive and crates.io but no container
# registry. Each is tagged with the exact name the Dockerfile asks for, so
# `build` finds it locally and the Dockerfile itself is not changed:
#
#   docker.io/library/debian:bookworm-slim   debootstrap --variant=minbase
#   docker.io/library/rust:R-bookworm        standin/rust.Dockerfile, with
#                                            this machine's Rust toolchain
#   gcr.io/distroless/cc-debian12:nonroot    standin/distroless-cc.Dockerfile
#
# An image already present (pulled or built before) is left alone.
#
#   standin/build.sh ENGINE RUST_VERSION
set -eu
engine=$1
rust_version=$2
here=$(cd "$(dirname "$0")" && pwd)

have() { "$engine" image inspect "$1" >/dev/null 2>&1; }

slim=docker.io/library/debian:bookworm-slim
if ! have "$slim"; then
  echo "stand-in $slim (debootstrap)"
  command -v debootstrap >/dev/null || { echo "debootstrap is needed" >&2; exit 1; }
  dir=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >"$dir.log" 2>&1 \
    || { tail -n 20 "$dir.log" >&2; exit 1; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc "$dir"/usr/share/man
  tar -C "$dir" -c . | "$engine" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$slim" >/dev/null
  rm -rf "$dir" "$dir.log"
fi

rust=docker.io/library/rust:$rust_version-bookworm
if ! have "$rust"; then
  echo "stand-in $rust (this machine's toolchain)"
  sysroot=$(rustc --print sysroot)
  case "$(rustc --version)" in
    "rustc $rust_version".*) ;;
    *) echo "this machine's $(rustc --version) is not Rust $rust_version" >&2; exit 1 ;;
  esac
  # The context: the toolchain (hard links where the file system allows,
  # without its documentation) and the certificate authorities this
  # machine added to its own trust store (an egress proxy's, say), which
  # cargo inside the build needs to reach crates.io the way this machine does.
  ctx=$(mktemp -d)
  for d in bin lib libexec; do
    cp -al "$sysroot/$d" "$ctx/$d" 2>/dev/null || cp -a "$sysroot/$d" "$ctx/$d"
  done
  mkdir -p "$ctx/ca"
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$crt" ] && cp "$crt" "$ctx/ca/"
  done
  "$engine" build $BUILD_FLAGS -q -f "$here/rust.Dockerfile" -t "$rust" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

distroless=gcr.io/distroless/cc-debian12:nonroot
if ! have "$distroless"; then
  echo "stand-in $distroless (Debian 12 packages, unpacked)"
  "$engine" build $BUILD_FLAGS -q -f "$here/distroless-cc.Dockerfile" -t "$distroless" "$here" >/dev/null
fi
