#!/bin/sh
# Checks what the container image promises without a container engine: the
# binary BIN, with the libraries docker/collect-libs.sh copies, runs in a
# root folder holding only what the distroless base provides to the loader
# (glibc and libgcc; no shell, no package manager), as the non-root user
# 65532, with its data in /var/lib/proctor; `proctor serve` starts on its
# embedded defaults and `proctor healthcheck` (the image's HEALTHCHECK)
# reports it SERVING. Needs root (chroot) and Debian's dpkg.
#
#   docker/check-rootfs.sh BIN
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d)
chmod 0755 "$root"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

# The base: the loader, glibc and libgcc, as distroless/cc ships them.
mkdir -p "$root/usr/lib" "$root/usr/lib64" "$root/etc" "$root/tmp" "$root/var/lib/proctor"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
for pkg in libc6 libgcc-s1; do
  dpkg -L "$pkg" | while read -r f; do
    case "$f" in /usr/share/*|/etc/*) continue ;; esac
    { [ -f "$f" ] || [ -L "$f" ]; } || continue
    dir=$(readlink -f "$(dirname "$f")")
    mkdir -p "$root$dir"
    cp -a "$f" "$root$dir/"
  done
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
chmod 1777 "$root/tmp"

install -D -m 0755 "$bin" "$root/usr/local/bin/proctor"
"$here/collect-libs.sh" "$root/usr/local/bin/proctor" "$root"
chown 65532:65532 "$root/var/lib/proctor"
for sh in /bin/sh /usr/bin/sh /bin/bash /usr/bin/bash; do
  if [ -e "$root$sh" ]; then echo "a shell slipped into the image: $sh" >&2; exit 1; fi
done

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chroot=$(command -v chroot)
run() {
  env -i PROCTOR_LISTEN="127.0.0.1:$port" PROCTOR_DATA_DIR=/var/lib/proctor PROCTOR_LOG_FORMAT=json \
    "$chroot" --userspec=65532:65532 "$root" /usr/local/bin/proctor "$@"
}
run serve >"$root/tmp/serve.log" 2>&1 &
pid=$!
tries=0
until run healthcheck --addr "127.0.0.1:$port" --timeout-seconds 2 >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "proctor never turned healthy in the image root; its log:" >&2
    cat "$root/tmp/serve.log" >&2
    exit 1
  fi
  sleep 0.5
done
# The data folder is the non-root user's, and the server wrote to it.
test -n "$(ls -A "$root/var/lib/proctor")"
echo "image root: $(du -sh "$root" | cut -f1), healthy after $tries retries as uid 65532 with no shell"
