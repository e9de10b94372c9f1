# syntax=docker/dockerfile:1
# The ccm's image, for kind and other clusters (cloud-sim runs outside the cluster, as a cloud does):
#   docker build -t simcloud/ccm:dev .
# The Rust image is the toolchain pinned in rust-toolchain.toml (a test keeps them equal). The
# dependencies build in their own layer from cargo-chef's recipe (Cargo.toml and Cargo.lock
# only), so a change to our sources rebuilds only our crates; the kind workflow keeps the layers
# in GitHub's cache.
FROM rust:1.95.0-bookworm AS chef
RUN cargo install --locked cargo-chef --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p ccm --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p ccm && cp target/release/ccm /usr/local/bin/ccm

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/ccm /usr/local/bin/ccm
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ccm"]
