# airflow-secrets-sync: the CLI and the daemon in one small image.
#   docker build -t airflow-secrets-sync .
#   docker run --rm -v $PWD/config.toml:/etc/airflow-secrets-sync/config.toml:ro airflow-secrets-sync migrate --plan
# The daemon: see docker-compose.yml and docs/daemon.md.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# gcc builds aws-lc-sys and the bundled SQLite; no OpenSSL, no cmake (one TLS stack: rustls + aws-lc-rs).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev make && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin airflow-secrets-sync

FROM debian:bookworm-slim
# ca-certificates: TLS to Vault, AWS, GCP and Azure; tini: PID 1 that forwards SIGTERM/SIGHUP.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/airflow-secrets-sync --create-home airflow-secrets-sync
COPY --from=build /src/target/release/airflow-secrets-sync /usr/local/bin/airflow-secrets-sync
USER 10001
WORKDIR /var/lib/airflow-secrets-sync
ENV AIRFLOW_SECRETS_SYNC_CONFIG=/etc/airflow-secrets-sync/config.toml
EXPOSE 9477
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/airflow-secrets-sync"]
CMD ["daemon"]
