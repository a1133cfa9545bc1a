#!/usr/bin/env bash
# ACA-Py 0.12.8, the issuer benchmark's peer (issue 4, "Benchmark"), in a venv of its own.
#
#   bench/peers/acapy.sh install                 create .venv-acapy/ (once; never committed)
#   bench/peers/acapy.sh start ADMIN_PORT PORT   run the agent in the foreground: no ledger,
#                                                an in-memory askar wallet, the admin API on
#                                                127.0.0.1:ADMIN_PORT without authentication
#
# The peer's own dependencies stay out of the project's .venv: ACA-Py pins versions of
# pydantic, aiohttp and others that the project does not use.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${ACAPY_VENV:-$ROOT/.venv-acapy}"
PYTHON="${ACAPY_PYTHON:-$ROOT/.venv/bin/python}"
VERSION="0.12.8"

install() {
    if [ -x "$VENV/bin/aca-py" ] && [ -f "$VENV/.installed-$VERSION" ]; then
        return 0
    fi
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "aries-cloudagent[askar]==$VERSION"
    touch "$VENV/.installed-$VERSION"
}

# A fresh raw wallet key per run: the wallet lives in memory and dies with the agent, and RAW
# skips ACA-Py's default Argon2 derivation of the key, which is start-up cost only.
wallet_key() {
    "$VENV/bin/python" -c "from aries_askar import Store; print(Store.generate_raw_key())"
}

start() {
    local admin_port="$1" port="$2"
    exec "$VENV/bin/aca-py" start \
        --no-ledger \
        --wallet-type askar \
        --wallet-name ":memory:" \
        --wallet-key "$(wallet_key)" \
        --wallet-key-derivation-method RAW \
        --auto-provision \
        --inbound-transport http 127.0.0.1 "$port" \
        --outbound-transport http \
        --endpoint "http://127.0.0.1:$port" \
        --admin 127.0.0.1 "$admin_port" \
        --admin-insecure-mode \
        --log-level error
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    *) echo "usage: $0 install | start ADMIN_PORT PORT" >&2; exit 2 ;;
esac
