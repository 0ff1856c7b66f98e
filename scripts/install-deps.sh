#!/usr/bin/env bash
# Installs what Ferry needs beyond Swift: LMDB's headers and library (Debian: liblmdb-dev),
# PostgreSQL (the store tests start a throwaway server from its binaries unless
# FERRY_TEST_POSTGRES_URL names one), and Debian's chromium, the headless browser the ferry.js
# tests run in (BrowserTests), and schemathesis from PyPI into ./.venv, which checks the HTTP API
# against its OpenAPI document (OpenAPITests; skip it with FERRY_NO_SCHEMATHESIS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
schemathesis_version=4.32.5
packages=()
if ! pkg-config --exists lmdb 2>/dev/null || [ ! -f /usr/include/lmdb.h ]; then
    packages+=(liblmdb-dev pkg-config)
fi
if [ -z "${FERRY_TEST_POSTGRES_URL:-}" ] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    packages+=(postgresql)
fi
if [ -z "${FERRY_NO_BROWSER:-}" ] && ! command -v chromium >/dev/null; then
    packages+=(chromium)
fi
wants_schemathesis=""
if [ -z "${FERRY_NO_SCHEMATHESIS:-}" ] && ! .venv/bin/st --version 2>/dev/null | grep -q "$schemathesis_version"; then
    wants_schemathesis=1
    # Debian's python3 makes virtual environments only with python3-venv.
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        packages+=(python3 python3-venv)
    fi
fi
if [ ${#packages[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
    echo "installed ${packages[*]}"
fi
if [ -n "$wants_schemathesis" ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
    echo "installed schemathesis $schemathesis_version into .venv"
fi
