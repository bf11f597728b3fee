# Stand-in for gcr.io/distroless/cc-debian12:nonroot, for machines that can
# reach Debian's archive but not the container registries. Assembled the way
# distroless assembles it: the same Debian 12 packages unpacked (never
# installed, so no maintainer scripts, no dpkg, no shell), the CA bundle, and
# the nonroot user 65532 with its home. Only docker/check-image.sh uses it,
# and only when the real base cannot be pulled.
ARG BASE=debian:bookworm-slim
FROM ${BASE} AS debs
WORKDIR /debs
RUN apt-get update \
 && apt-get download base-files netbase tzdata ca-certificates \
      libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 \
 && mkdir /rootfs \
 && for deb in ./*.deb; do dpkg-deb -x "$deb" /rootfs; done \
 && rm -rf /rootfs/usr/share/doc /rootfs/usr/share/man /rootfs/usr/share/lintian \
 && for d in bin sbin lib lib64; do [ -e "/rootfs/$d" ] || ln -s "usr/$d" "/rootfs/$d"; done \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/home/nonroot /rootfs/root \
 && cat /rootfs/usr/share/ca-certificates/mozilla/*.crt > /rootfs/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp \
 && chmod 0700 /rootfs/root \
 && chown 65532:65532 /rootfs/home/nonroot \
 && if [ -e /rootfs/bin/sh ] || [ -e /rootfs/usr/bin/sh ]; then echo "a shell in the base" >&2; exit 1; fi

FROM scratch
COPY --from=debs /rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/nonroot
