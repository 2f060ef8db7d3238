# Image of the flock-netpol agent: a static Go binary on Debian slim with nft(8).
#
# Base images are pinned by tag. To pin by digest as well, resolve the multi-platform index
# digest of each tag (e.g. `docker buildx imagetools inspect golang:1.26.8-bookworm` or
# `crane digest golang:1.26.8-bookworm`) and write FROM <image>:<tag>@sha256:<digest>; keep the
# tag for readability. Use the index digest, not a per-architecture one, or multi-platform
# builds break.

# Build stage. The Go patch version matches the `go` line of go.mod (the minimum the module
# accepts; the image sets GOTOOLCHAIN=local, so an older Go would fail rather than download).
# It runs on the build machine's platform and cross-compiles for the target (buildx
# --platform), which is cheap because the binary is pure Go.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
# Static (no cgo, so no libc dependency in the final stage), reproducible paths, no symbol tables.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w" -o /out/flock-netpol ./cmd

# Runtime stage. The agent applies its rules by running `nft -f -`, so the image needs the nft
# command, which is why it is not distroless. Debian 12 ships nft 1.0.6, the version the
# kernel tests of this repository run against. The dated tag is the Debian image serial of
# 2026-08-03 (Debian 12.15); move it forward to pick up security updates.
FROM debian:bookworm-20260803-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nftables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/flock-netpol /flock-netpol
LABEL org.opencontainers.image.source="https://github.com/flock-net/flock-netpol" \
      org.opencontainers.image.description="flock-netpol: NetworkPolicy enforcement with nftables, one agent per node"
# Root, on purpose. Changing the node's nft rule set needs CAP_NET_ADMIN in the host's user
# namespace, and Kubernetes grants capabilities without ambient capabilities, so a non-root
# user would lose NET_ADMIN when the agent execs nft. The DaemonSet (config/manager) confines
# this root: every other capability dropped, no privilege escalation, read-only root
# filesystem, RuntimeDefault seccomp.
USER 0:0
ENTRYPOINT ["/flock-netpol"]
CMD ["run"]
