# The collector as a small image: built with the Rust toolchain, run from distroless as a
# non-root user, the binary stripped.
#
#   docker build -t heapster:latest .
#
# Build stage: the workspace (the collector and its dataflows crate; the test bed's manifest is
# part of the workspace, though the collector's binary does not link it), release profile.
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY dataflows ./dataflows
COPY testbed ./testbed
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked -p heapster --bin heapster \
    && strip target/release/heapster

# Runtime stage: glibc and CA certificates only, no shell; uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/heapster /usr/local/bin/heapster
USER 65532:65532
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/heapster"]
CMD ["--help"]
