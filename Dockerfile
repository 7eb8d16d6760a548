# syntax=docker/dockerfile:1
# One image for every service: `orderflow <service>` (order-service, inventory-service,
# payment-service, delivery-service, query-api) or a tool (topics create, dlq, verify, loadgen).
# Build: docker build --build-arg VERSION=$(git describe --tags --always) \
#          --build-arg COMMIT=$(git rev-parse --short HEAD) -t orderflow .

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first so that code changes do not invalidate the dependency layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_TIME=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X github.com/orderflow/orderflow/internal/version.Version=${VERSION} \
                -X github.com/orderflow/orderflow/internal/version.Commit=${COMMIT} \
                -X github.com/orderflow/orderflow/internal/version.BuildTime=${BUILD_TIME}" \
      -o /out/orderflow ./cmd/orderflow
# No -tags devmode: the image links none of dev mode's embedded servers (deploy/image_test.go).

# distroless/static: CA certificates, tzdata, /etc/passwd with "nonroot" (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
ARG BUILD_TIME=unknown
LABEL org.opencontainers.image.title="orderflow" \
      org.opencontainers.image.description="Event-driven order fulfilment: order, inventory, payment, delivery and query services" \
      org.opencontainers.image.source="https://github.com/orderflow/orderflow" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${BUILD_TIME}"
COPY --from=build /out/orderflow /usr/local/bin/orderflow
USER 65532:65532
# The services' APIs, then their ops ports (<SERVICE>_OPS_ADDR, as the Kubernetes manifests set them).
EXPOSE 8080 8081 8082 8083 8084 9080 9081 9082 9083 9084
ENTRYPOINT ["/usr/local/bin/orderflow"]
CMD ["--help"]
