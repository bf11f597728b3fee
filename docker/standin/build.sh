#!/bin/sh
# Resolves the Dockerfile's three base images for ENGINE and prints the
# `--build-arg` flags that select them. Each official image is pulled; only
# where that fails (a machine that reaches Debian's archive and crates.io
# but no container registry) is a local stand-in used, built once and kept
# under its own name, so an official name never points at a stand-in:
#
#   localhost/proctor-standin/debian:bookworm-slim   debootstrap --variant=minbase
#   localhost/proctor-standin/rust:R-bookworm-H      standin/rust.Dockerfile, with
#                                                    this machine's Rust toolchain
#   localhost/proctor-standin/distroless-cc:nonroot-H  standin/distroless-cc.Dockerfile
#
# (H: the recipe's digest, so a changed recipe is built anew.)
#
# Progress goes to stderr; stdout is only the flags.
#
#   standin/build.sh ENGINE RUST_VERSION
set -eu
engine=$1
rust_version=$2
here=$(cd "$(dirname "$0")" && pwd)
flags=${BUILD_FLAGS-}
standin=localhost/proctor-standin

have() { "$engine" image inspect "$1" >/dev/null 2>&1; }
pulled() { timeout 300 "$engine" pull -q "$1" >/dev/null 2>&1; }

# The Debian base: the official image, else a debootstrap of bookworm.
slim=docker.io/library/debian:bookworm-slim
if pulled "$slim"; then
  debian=$slim
else
  debian=$standin/debian:bookworm-slim
  if ! have "$debian"; then
    echo "no registry: stand-in $debian (debootstrap)" >&2
    command -v debootstrap >/dev/null || { echo "debootstrap is needed" >&2; exit 1; }
    dir=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >"$dir.log" 2>&1 \
      || { tail -n 20 "$dir.log" >&2; exit 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc "$dir"/usr/share/man
    tar -C "$dir" -c . | "$engine" import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' - "$debian" >/dev/null
    rm -rf "$dir" "$dir.log"
  fi
fi

# The Rust builder: the official image, else Debian plus this machine's
# toolchain of the same version.
rust=docker.io/library/rust:$rust_version-bookworm
if ! pulled "$rust"; then
  # Tagged with the recipe's digest, so a changed recipe builds anew.
  rust=$standin/rust:$rust_version-bookworm-$(sha256sum "$here/rust.Dockerfile" | cut -c1-12)
  if ! have "$rust"; then
    echo "no registry: stand-in $rust (this machine's toolchain)" >&2
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
      if [ -f "$crt" ]; then cp "$crt" "$ctx/ca/"; fi
    done
    # shellcheck disable=SC2086
    "$engine" build $flags -q --build-arg "BASE=$debian" -f "$here/rust.Dockerfile" -t "$rust" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
fi

# The runtime base: distroless, else the same Debian packages unpacked.
runtime=gcr.io/distroless/cc-debian12:nonroot
if ! pulled "$runtime"; then
  runtime=$standin/distroless-cc:nonroot-$(sha256sum "$here/distroless-cc.Dockerfile" | cut -c1-12)
  if ! have "$runtime"; then
    echo "no registry: stand-in $runtime (Debian 12 packages, unpacked)" >&2
    # shellcheck disable=SC2086
    "$engine" build $flags -q --build-arg "BASE=$debian" -f "$here/distroless-cc.Dockerfile" -t "$runtime" "$here" >/dev/null
  fi
fi

echo "--build-arg RUST_IMAGE=$rust --build-arg DEBIAN_IMAGE=$debian --build-arg RUNTIME_IMAGE=$runtime"
