# Images of the simcloud binaries (ccm, cloud-sim, simctl), for kind and other clusters:
#   docker build -t simcloud/ccm:dev .
# The entrypoint is the ccm; `cloud-sim` and `simctl` are on the PATH too.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ccm -p cloud-sim -p simctl \
 && cp target/release/ccm target/release/cloud-sim target/release/simctl /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/ccm /usr/local/bin/cloud-sim /usr/local/bin/simctl /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ccm"]
