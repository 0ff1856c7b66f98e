#!/usr/bin/env bash
# Installs what Ferry needs beyond Swift: LMDB's headers and library (Debian: liblmdb-dev).
set -euo pipefail
if pkg-config --exists lmdb 2>/dev/null && [ -f /usr/include/lmdb.h ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq liblmdb-dev pkg-config >/dev/null
echo "installed liblmdb-dev"
