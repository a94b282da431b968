# A minimal image: one statically linked `mtls` binary on `scratch`, run as
# a non-root user. Two ways to build it:
#
#   docker build -t mtls .
#       builds mtls inside a Rust image (needs access to an image registry)
#   scripts/build-static.sh && DOCKER_BUILDKIT=1 docker build --target prebuilt -t mtls .
#       copies dist/mtls, built on the host; pulls no image at all
#       (air-gapped machines)
#
# Run it with the PKI mounted read-only and the settings from .env:
#   docker run -d --name mtls -p 5001:5001 --env-file .env \
#       -v "$PWD/pki:/app/pki:ro" --user "$(id -u):$(id -g)" mtls

ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target x86_64-unknown-linux-gnu \
    && mkdir -p /out \
    && cp target/x86_64-unknown-linux-gnu/release/mtls /out/mtls

# What both final images share.
FROM scratch AS base
WORKDIR /app
USER 10001:10001
EXPOSE 5001
# `mtls health` asks the admin endpoint (127.0.0.1:9090, or ADMIN_LISTEN)
# and needs neither a shell nor curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/mtls", "health"]
ENTRYPOINT ["/mtls"]
CMD ["serve"]

FROM base AS prebuilt
COPY dist/mtls /mtls

FROM base AS runtime
COPY --from=build /out/mtls /mtls
