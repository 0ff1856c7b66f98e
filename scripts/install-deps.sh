#!/usr/bin/env bash
# Installs what Ferry needs beyond Swift: LMDB's headers and library (Debian: liblmdb-dev),
# PostgreSQL (the store tests start a throwaway server from its binaries unless
# FERRY_TEST_POSTGRES_URL names one), and Debian's chromium, the headless browser the ferry.js
# tests run in (BrowserTests).
set -euo pipefail
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
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
echo "installed ${packages[*]}"
