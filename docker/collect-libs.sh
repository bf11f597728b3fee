#!/bin/sh
# Copies the shared libraries BIN links (libpq, OpenSSL, Kerberos, LDAP, ...)
# into the root folder OUT, each in its real folder (/usr/lib/<arch>) under
# its soname, so the loader finds them whether or not /lib is a symlink in
# the base. glibc and libgcc are left out: they come from the base image
# itself, so the loader and libc always match. Fails if a library is missing.
#
# Used by the Dockerfile's runtime-libs stage.
#
#   collect-libs.sh BIN OUT
set -eu
bin=$1
out=$2
ldd "$bin" | awk '/=> \// { print $3 }' | while read -r lib; do
  pkg=$( (dpkg -S "$lib" || dpkg -S "$(readlink -f "$lib")") 2>/dev/null | head -n1 | cut -d: -f1 || true)
  case "$pkg" in libc6|libgcc-s1) continue ;; esac
  dir=$(readlink -f "$(dirname "$lib")")
  mkdir -p "$out$dir"
  cp -L "$lib" "$out$dir/"
done
if ldd "$bin" | grep -q 'not found'; then
  ldd "$bin" >&2
  exit 1
fi
