# onebox + the guestbook demo app, in one FROM-scratch image.
#
#   docker build -t onebox .            (the legacy builder is enough; no BuildKit syntax)
#   docker run -p 8080:8080 --read-only -e MYSQL_HOST=… onebox
#
# Replace the demo by building your own image FROM this one (or COPY the
# onebox binary) and setting APP_COMMAND / APP_PRESTART / PROXY_ROOT.

# ---- build stage: both binaries, static, stripped --------------------------------
FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath
# Modules first, so a source change does not download them again. A build
# context that carries vendor/ (an offline build: see docs/container.md) is
# built from it instead; the glob copies modules.txt only when it exists.
COPY go.mod go.sum vendor/modules.tx[t] ./
RUN if [ -f modules.txt ]; then rm modules.txt; else go mod download; fi
COPY . .
ARG VERSION=
RUN go build -ldflags "-s -w -X main.buildVersion=${VERSION}" -o /out/bin/onebox ./cmd/onebox \
 && go build -ldflags "-s -w" -o /out/bin/guestbook ./examples/guestbook
# The scratch stage has no shell: prepare its few files here. uid/gid 10001 is
# an unprivileged numeric user that exists in no base image. /run/onebox holds
# the app socket when it is writable; on a read-only root with nothing mounted
# there, the socket is an abstract one that needs no file system. /run is mode
# 1777 like /tmp because a tmpfs mounted over it (--tmpfs /run) takes the mode
# of the directory beneath, so the non-root user can create /run/onebox there.
RUN mkdir -p /out/rootfs/etc /out/rootfs/run/onebox /out/rootfs/tmp /out/rootfs/usr/local /out/rootfs/var/lib/onebox/acme \
 && mv /out/bin /out/rootfs/usr/local/bin \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nonebox:x:10001:10001:onebox:/nonexistent:/sbin/nologin\n' >/out/rootfs/etc/passwd \
 && printf 'root:x:0:\nonebox:x:10001:\n' >/out/rootfs/etc/group \
 && mkdir -p /out/rootfs/etc/ssl/certs && cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/ \
 && chmod 1777 /out/rootfs/run /out/rootfs/tmp \
 && chown 10001:10001 /out/rootfs/run/onebox \
 && chmod 700 /out/rootfs/var/lib/onebox/acme && chown -R 10001:10001 /out/rootfs/var/lib/onebox

# ---- final stage ------------------------------------------------------------------
FROM scratch
ARG VERSION=
ARG REVISION=
LABEL org.opencontainers.image.title="onebox" \
      org.opencontainers.image.description="PID 1, reverse proxy and static files, pre-fork app server and MySQL gate in one static Go binary; runs the guestbook demo by default" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="scratch"
COPY --from=build /out/rootfs/ /
COPY examples/guestbook/static/ /var/www/html/
# onebox_worker, the Python side of the worker protocol, for images built
# FROM a Python base: COPY --from=onebox /usr/local/lib/onebox/python/ ...
COPY appserver/python/onebox_worker.py /usr/local/lib/onebox/python/onebox_worker.py
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    APP_COMMAND="guestbook" \
    APP_PRESTART="guestbook migrate" \
    PROXY_ROOT=/var/www/html
USER 10001:10001
# PROXY_ACME_DIR: the ACME account key and certificates, writable under a
# read-only root and kept across container replacements.
VOLUME /var/lib/onebox/acme
EXPOSE 8080 8443
STOPSIGNAL SIGTERM
# onebox health exits 0 only when /readyz is ready (pool up, database reachable);
# there is no curl in a scratch image, and none is needed.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["onebox", "health"]
ENTRYPOINT ["onebox"]
