# syntax=docker/dockerfile:1
# calcd's container image: calcd built static (CGO_ENABLED=0, -trimpath) in
# the Go toolchain's image, then copied alone into distroless/static: no
# shell, no package manager, a non-root user (65532, numeric so that
# Kubernetes' runAsNonRoot can verify it).
#
#   docker build -t calcd .
#
# The image listens on every interface (CALCD_TCP_ADDR=:4000,
# CALCD_GRPC_ADDR=:50051, CALCD_ADMIN_ADDR=:9464), so calcd's protected
# mode refuses to start (exit 2, saying why) until it has TLS and
# authentication. Mount the files and name them in the environment:
#
#   docker run --rm -p 4000:4000 -p 50051:50051 -p 127.0.0.1:9464:9464 \
#     -v "$PWD/certs:/etc/calcd/tls:ro" -v "$PWD/tokens.json:/etc/calcd/tokens.json:ro" \
#     -e CALCD_TLS_CERT=/etc/calcd/tls/server.pem -e CALCD_TLS_KEY=/etc/calcd/tls/server-key.pem \
#     -e CALCD_AUTH_TOKENS=/etc/calcd/tokens.json calcd
#
# or, on a network you trust (a service mesh that adds mTLS, a private
# network), accept plaintext with -e CALCD_INSECURE_LISTEN=true. Every
# calcd flag has a CALCD_* variable (calcd --help), and arguments after the
# image name are calcd flags, which win over the environment. The admin port
# (/metrics, /healthz, /readyz) is plaintext: publish it only where your
# monitoring reaches it. SIGTERM (docker stop) drains; give docker stop a
# --time longer than --drain-delay plus --shutdown-timeout (30 s).
#
# CI has no Docker engine: deploy/docker/test.sh runs this file's go build
# line in a copy of the build context .dockerignore admits, then checks the
# binary is static and that it serves, as user 65532, with this file's
# environment.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/calcd ./server/cmd/calcd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/calcd /usr/local/bin/calcd
USER 65532:65532
ENV CALCD_TCP_ADDR=:4000 \
    CALCD_GRPC_ADDR=:50051 \
    CALCD_ADMIN_ADDR=:9464
# raw TCP, gRPC, admin (/metrics, /healthz, /readyz)
EXPOSE 4000 50051 9464
ENTRYPOINT ["/usr/local/bin/calcd"]
