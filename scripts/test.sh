#!/usr/bin/env bash
# Installs what the tests need (Debian's etcd 3.4 server and etcdctl, the oracle; systemd-analyze,
# openssl and chromium; etcd3gw from PyPI), then runs formatting and lint checks and every test.
# Usage: ./scripts/test.sh [nextest filter]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "==> installing ${need_apt[*]} (Debian packages; the tests compare oxcd with real etcd)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# A real JSON-gateway client from PyPI, in a virtualenv of the project's own.
if ! target/py/bin/python3 -c "import etcd3gw" >/dev/null 2>&1; then
  echo "==> installing etcd3gw (PyPI) into target/py for the JSON gateway tests"
  python3 -m venv target/py
  target/py/bin/pip install --quiet etcd3gw==2.7.0
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
# The tests drive failpoints in the members they start (tests/it/faults): every test build
# has them; a release build never does.
FEATURES=(--features oxcd-server/failpoints)
echo "==> cargo clippy"
cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings
echo "==> building binaries the process tests start"
cargo build --workspace --bins "${FEATURES[@]}"
echo "==> tests"
cargo nextest run --workspace --no-fail-fast "${FEATURES[@]}" "$@"
