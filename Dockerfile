# A small image of oxcd, oxcdctl and oxcdutl: built with cargo in Rust's image, run on
# Debian slim as a non-root user. Configure it with etcd's flags or ETCD_* variables:
#   docker build -t oxcd .
#   docker run -p 2379:2379 -p 2380:2380 -v oxcd-data:/var/lib/etcd oxcd \
#     --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls http://127.0.0.1:2379
FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p oxcd-server -p oxcd-ctl -p oxcd-utl --bins \
 && strip target/release/oxcd target/release/oxcdctl target/release/oxcdutl

FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/etcd --create-home etcd
COPY --from=build /src/target/release/oxcd /src/target/release/oxcdctl /src/target/release/oxcdutl /usr/local/bin/
USER etcd
ENV ETCD_DATA_DIR=/var/lib/etcd
VOLUME /var/lib/etcd
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/oxcd"]
