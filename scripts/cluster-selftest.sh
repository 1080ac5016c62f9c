#!/usr/bin/env bash
# End-to-end check of scripts/cluster.sh, with timings: brings the cluster up,
# then exercises every fault helper against a quorum queue and a table:
#   - quorum queue with 3 replicas declared on node 1, published to and read
#     from through node 2; kill -9 of the leader's node: a new leader, nothing
#     lost; the node restarted rejoins;
#   - the leader's node partitioned away: it pauses (pause_minority), the
#     majority elects a new leader and serves, clients cannot reach the cut-off
#     node; heal: it is back with all replicas online;
#   - PostgreSQL: a row written through the multi-host URL is on the standby;
#     primary killed (immediate), writes fail, standby promoted, the same URL
#     writes again with the old row there; the old primary rejoins as the
#     synchronous standby.
# Only curl and psql are used (management API for publish/get).  As root.
#
# Usage: scripts/cluster-selftest.sh [--keep]   (--keep: leave the cluster up;
#        by default it runs `down` at the end and checks that nothing is left)
#
# The checks are built with eval '...' on purpose (expanded when run):
# shellcheck disable=SC2016
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
C=scripts/cluster.sh
KEEP=0
[[ "${1:-}" == --keep ]] && KEEP=1

PASS=0
FAIL=0
TIMINGS=()
ok() {
    PASS=$((PASS + 1))
    printf '[selftest] ok   %s\n' "$*"
}
bad() {
    FAIL=$((FAIL + 1))
    printf '[selftest] FAIL %s\n' "$*"
}
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
# timed LABEL CMD...: run CMD, record its wall time.
timed() {
    local label=$1 t0 rc=0
    shift
    t0=$EPOCHREALTIME
    "$@" || rc=$?
    TIMINGS+=("$(printf '%-34s %6.1f s' "$label" "$(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { print a - b }')")")
    return "$rc"
}
# poll SECS CMD...: until CMD succeeds (every 0.2 s); fails on timeout.
poll() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@"; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.2
    done
}

timed "up (from nothing or idempotent)" "$C" up >/dev/null
# shellcheck disable=SC1091 # written by cluster.sh up
source "${CLUSTER_DIR:-/dev/shm/campuspay-cluster}/env"
timed "up again (idempotent)" "$C" up >/dev/null
IFS=, read -r -a MGMT <<<"$RABBITMQ_MANAGEMENT_URLS"

# api N METHOD PATH [JSON]: management API of node N (1-3).
api() {
    local n=$1 method=$2 path=$3 body=${4:-}
    local url=${MGMT[$((n - 1))]}
    local creds=${url#http://}
    creds=${creds%@*}
    local base="http://${url#*@}"
    if [[ -n "$body" ]]; then
        curl -sf --max-time 10 -u "$creds" -X "$method" -H 'content-type: application/json' -d "$body" "$base$path"
    else
        curl -sf --max-time 10 -u "$creds" -X "$method" "$base$path"
    fi
}

VH=cp_selftest
Q=selftest_qq
api 1 DELETE "/api/vhosts/$VH" >/dev/null 2>&1 || true
check "vhost $VH created on node 1" api 1 PUT "/api/vhosts/$VH"
check "guest granted on $VH" api 1 PUT "/api/permissions/$VH/guest" '{"configure":".*","write":".*","read":".*"}'
check "quorum queue with 3 replicas declared on node 1" \
    api 1 PUT "/api/queues/$VH/$Q" '{"durable":true,"arguments":{"x-queue-type":"quorum","x-quorum-initial-group-size":3}}'

publish() { # publish N PAYLOAD: through node N
    api "$1" POST "/api/exchanges/$VH/amq.default/publish" \
        "{\"properties\":{\"delivery_mode\":2},\"routing_key\":\"$Q\",\"payload\":\"$2\",\"payload_encoding\":\"string\"}" |
        grep -q '"routed":true'
}
get_one() { # get_one N: consume (ack) one message through node N, print its payload
    api "$1" POST "/api/queues/$VH/$Q/get" '{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}' |
        grep -o '"payload":"[^"]*"' | cut -d'"' -f4
}
# Ready messages as the queue's leader reports them through node N (polls:
# the management stats lag a few seconds behind).
count_is() {
    local n=$1 want=$2
    [[ "$(api "$n" GET "/api/queues/$VH/$Q" | grep -o '"messages":[0-9]*' | head -1 | cut -d: -f2)" == "$want" ]]
}
online_count() {
    api "$1" GET "/api/queues/$VH/$Q" | grep -o '"online":\[[^]]*\]' | head -1 | grep -o '@' | wc -l
}
members_count() {
    api "$1" GET "/api/queues/$VH/$Q" | grep -o '"members":\[[^]]*\]' | head -1 | grep -o '@' | wc -l
}

check "quorum queue has 3 members" [ "$(members_count 1)" = 3 ]
n_ok=0
for i in $(seq 1 10); do publish 2 "m$i" && n_ok=$((n_ok + 1)); done
check "10 messages published through node 2" [ "$n_ok" = 10 ]
check "first message read through node 2 is m1" [ "$(get_one 2)" = m1 ]
check "queue holds 9 messages" poll 15 count_is 1 9

# --- kill -9 the leader's node ---
L=$("$C" rabbit-leader "$Q" "$VH")
ok "leader of $Q is node $L"
timed "rabbit-kill (leader node $L)" "$C" rabbit-kill "$L"
S=$((L % 3 + 1)) # a surviving node
new_leader() {
    local l
    l=$("$C" rabbit-leader "$Q" "$VH" 2>/dev/null) && [[ "$l" != "$L" ]]
}
check "new leader elected after kill -9 of node $L" timed "new leader after kill -9" poll 30 new_leader
ok "new leader is node $("$C" rabbit-leader "$Q" "$VH")"
check "next message read through node $S is m2 (nothing lost)" [ "$(get_one "$S")" = m2 ]
check "publish through node $S while node $L is down" publish "$S" m11
check "queue holds 9 messages" poll 15 count_is "$S" 9
check "rabbit-start $L: node rejoins" timed "rabbit-start (node $L rejoins)" "$C" rabbit-start "$L"
check "all 3 replicas online again" poll 30 eval '[ "$(online_count '"$L"')" = 3 ]'

# --- partition the leader's node ---
P=$("$C" rabbit-leader "$Q" "$VH")
M=$((P % 3 + 1))
ok "leader of $Q is node $P; partitioning it"
check "partition $P: majority sees it down, it pauses" timed "partition --wait (detect + pause)" "$C" partition "$P" --wait
IFS=, read -r -a AMQP <<<"$AMQP_URLS"
hostport=${AMQP[$((P - 1))]#*@}
hostport=${hostport%%/*}
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
check "clients cannot reach node $P's AMQP port ($hostport)" eval '! tcp_open "${hostport%:*}" "${hostport#*:}"'
check "majority elected a new leader" poll 30 eval '[ "$("$C" rabbit-leader "$Q" "$VH" 2>/dev/null)" != "$P" ]'
check "majority node $M serves: publish" publish "$M" m12
check "majority node $M serves: next message is m3" [ "$(get_one "$M")" = m3 ]
check "node $M sees 2 running nodes, no recorded partition" eval \
    '"$C" ctl '"$M"' cluster_status --formatter json | grep -q "\"partitions\":{}"'
check "heal $P: back, 3 nodes running" timed "heal (node back, 3 running)" "$C" heal "$P"
check "all 3 replicas online after heal" poll 30 eval '[ "$(online_count '"$P"')" = 3 ]'
check "queue holds 9 messages after heal" poll 15 count_is "$P" 9
check "node $P serves: next message is m4" [ "$(get_one "$P")" = m4 ]
api 1 DELETE "/api/vhosts/$VH" >/dev/null || true

# --- PostgreSQL ---
sql() { psql -w -X -q -t -A "$@"; }
sql "$DATABASE_URL" -c 'drop table if exists selftest' -c 'create table selftest (id int primary key, note text)'
check "insert through DATABASE_URL" sql "$DATABASE_URL" -c "insert into selftest values (1, 'before failover')"
primary_port=$(sql "$DATABASE_URL" -c 'select inet_server_port()')
port_of() {
    local p=${1%/*}
    echo "${p##*:}"
}
if [[ "$primary_port" == "$(port_of "$PG1_URL")" ]]; then STANDBY_URL=$PG2_URL; else STANDBY_URL=$PG1_URL; fi
on_standby() { [[ "$(sql "$STANDBY_URL" -c 'select note from selftest where id = 1' 2>/dev/null)" == "before failover" ]]; }
check "row is on the standby ($STANDBY_URL)" poll 10 on_standby
check "standby is the synchronous one" eval \
    '[ "$(sql "$DATABASE_URL" -c "select sync_state from pg_stat_replication")" = sync ]'
check "pg-kill-primary" timed "pg-kill-primary" "$C" pg-kill-primary
check "writes fail while no primary" eval '! sql "$DATABASE_URL" -c "insert into selftest values (9, '"'x'"')" 2>/dev/null'
check "pg-promote" timed "pg-promote" "$C" pg-promote
check "DATABASE_URL writes after promotion" sql "$DATABASE_URL" -c "insert into selftest values (2, 'after failover')"
check "the pre-failover row is there" eval \
    '[ "$(sql "$DATABASE_URL" -c "select count(*) from selftest")" = 2 ]'
check "pg-rejoin: old primary is the synchronous standby" timed "pg-rejoin" "$C" pg-rejoin
check "write after rejoin (waits for the new standby)" sql "$DATABASE_URL" -c "insert into selftest values (3, 'after rejoin')"
sql "$DATABASE_URL" -c 'drop table selftest'

"$C" status

if ((KEEP == 0)); then
    timed "down" "$C" down
    timed "down again (nothing to do)" "$C" down
    check "no cluster process left" eval '! ip netns list | grep -q "^cp-rmq" && ! pgrep -f "campuspay-cluster" >/dev/null'
    check "no namespace, bridge or veth left" eval '! ip -o link | grep -q "cpbr0\|cpveth"'
    check "cluster directory removed" eval '[ ! -e "${CLUSTER_DIR:-/dev/shm/campuspay-cluster}" ]'
fi

printf '\n[selftest] timings\n'
printf '  %s\n' "${TIMINGS[@]}"
echo "selftest: $PASS passed, $FAIL failed"
((FAIL == 0))
