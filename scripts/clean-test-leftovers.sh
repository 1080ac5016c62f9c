#!/usr/bin/env bash
# Drops databases, vhosts and terminals' broker users (`…@cp_test_<random>`) left behind by test runs that were killed before their clean-up
# ran (each test creates `cp_test_<random>` and drops it when it ends). Run before a test run,
# never during one: it would pull the ground from under running tests.
set -euo pipefail

PGURL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/campuspay}"
ADMIN_DB="${PGURL%/*}/postgres"
MGMT="${RABBITMQ_MANAGEMENT_URL:-http://guest:guest@127.0.0.1:15672}"

dbs=$(psql -w "$ADMIN_DB" -tAc "select datname from pg_database where datname like 'cp\_test\_%'" || true)
for db in $dbs; do
    psql -w "$ADMIN_DB" -q -c "drop database if exists \"$db\" with (force)" && echo "[clean] dropped database $db"
done

if command -v curl >/dev/null; then
    vhosts=$(curl -sf "$MGMT/api/vhosts" | python3 -c 'import json,sys; print("\n".join(v["name"] for v in json.load(sys.stdin) if v["name"].startswith("cp_test_")))' || true)
    for vh in $vhosts; do
        curl -sf -X DELETE "$MGMT/api/vhosts/$vh" && echo "[clean] deleted vhost $vh"
    done
    users=$(curl -sf "$MGMT/api/users" | python3 -c 'import json,sys,urllib.parse; print("\n".join(urllib.parse.quote(u["name"], safe="") for u in json.load(sys.stdin) if "@cp_test_" in u["name"]))' || true)
    for user in $users; do
        curl -sf -X DELETE "$MGMT/api/users/$user" && echo "[clean] deleted broker user $user"
    done
fi
