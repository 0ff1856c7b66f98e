#!/usr/bin/env bash
# Starts a PostgreSQL for a local Ferry cluster, in ./ferry-postgres (made on first use), on
# 127.0.0.1:${PGPORT:-5432}, with a database `ferry` its user `ferry` may use without a password,
# and prints the URL to give ferryd (--postgres / FERRY_POSTGRES_URL). `stop` stops it.
# Debian's postgresql package must be installed (scripts/install-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
folder="$PWD/ferry-postgres"
port="${PGPORT:-5432}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -n "$bin" ] || { echo "no /usr/lib/postgresql/*/bin: run scripts/install-deps.sh" >&2; exit 1; }
run=()
mkdir -p "$folder"
if [ "$(id -u)" -eq 0 ]; then
    # PostgreSQL refuses to run as root: it runs as a system user of its own.
    id -u ferrypg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ferrypg
    chown ferrypg "$folder"
    run=(setpriv --reuid=ferrypg --regid=ferrypg --init-groups --)
fi
if [ "${1:-}" = "stop" ]; then
    "${run[@]}" "$bin/pg_ctl" -D "$folder/data" stop -m fast
    exit 0
fi
if [ ! -f "$folder/data/PG_VERSION" ]; then
    "${run[@]}" "$bin/initdb" -D "$folder/data" -U ferry --auth=trust -E UTF8 --no-locale >/dev/null
fi
# Already running (a second broker asking for the URL): leave it be.
if ! "${run[@]}" "$bin/pg_ctl" -D "$folder/data" status >/dev/null 2>&1; then
    "${run[@]}" "$bin/pg_ctl" -D "$folder/data" -l "$folder/postgres.log" -w \
        -o "-k $folder -h 127.0.0.1 -p $port -c fsync=on -c synchronous_commit=on" start >/dev/null
fi
"$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U ferry -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferry'" | grep -q 1 \
    || "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U ferry -d postgres -c "CREATE DATABASE ferry" >/dev/null
echo "postgres://ferry@127.0.0.1:$port/ferry"
