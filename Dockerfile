# syntax=docker/dockerfile:1
# The pimgate container image: a release build on Debian 12, run on distroless as uid 65532.
#
#   docker build -t pimgate .
#   docker run --rm -p 8080:8080 pimgate            # embedded SQLite under /var/lib/pimgate/data
#
# The migrations are embedded in the binary (sqlx::migrate!), so the image holds nothing but
# the binary. Configuration: PIMGATE_CONFIG (the Helm chart mounts pimgate.toml at
# /etc/pimgate) and the PIMGATE_* variables of README.md.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the build reads: the manifest and lock file, the sources and the migrations it
# embeds; benches/ and tests/ because Cargo.toml names targets there (they are not built).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
COPY tests ./tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile production --locked --bin pimgate \
    && install -D -m 0755 target/production/pimgate /out/pimgate \
    && install -d -o 65532 -g 65532 -m 0750 /out/var/lib/pimgate/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/pimgate /usr/local/bin/pimgate
COPY --from=build --chown=65532:65532 /out/var/lib/pimgate /var/lib/pimgate
# Relative paths pimgate uses (data/pimgate.db, data/key-encryption.key, config/pimgate.toml)
# resolve here; mount a volume at /var/lib/pimgate/data to keep an embedded database.
WORKDIR /var/lib/pimgate
USER 65532:65532
# pimgate listens on 127.0.0.1:8080 by default; in a container it must listen on every
# interface.
ENV PIMGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pimgate"]
CMD ["serve"]
