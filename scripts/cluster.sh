#!/usr/bin/env bash
# Local test cluster for campuspay: three clustered RabbitMQ nodes, each in its
# own network namespace, and a PostgreSQL primary with a synchronous streaming
# standby.  Built only from the installed Debian packages (RabbitMQ 3.10,
# PostgreSQL 15); it never touches the machine's default RabbitMQ node or
# PostgreSQL cluster (other ports, node names, directories, Erlang cookie).
#
# NEEDS ROOT: `ip netns`, veth and bridge set-up, and starting the servers as
# the `rabbitmq` and `postgres` users.  CI and the dev machines run as root.
#
# Usage: scripts/cluster.sh COMMAND [ARGS]   (see `scripts/cluster.sh help`)
#
# Layout (all under $CLUSTER_DIR, default /dev/shm/campuspay-cluster: RAM-backed,
# so `down` is instant; on this machine's disk deleting PostgreSQL's ~3000 small
# files took 5-7 s):
#   env                 connection settings (`source` it; make can `include` it)
#   home/.erlang.cookie the cluster's own Erlang cookie (HOME of the nodes/CLI)
#   rmqN/               node N: rabbitmq-env.conf, rabbitmq.conf, enabled_plugins,
#                       mnesia/, log/, pid
#   pg/pg1, pg/pg2      PostgreSQL data dirs (pg1 starts as primary), pg/run
#                       (unix sockets), pg/pgN.log, pg/pgN.ready (data dir complete)
#
# Network: bridge cpbr0 = $CLUSTER_NET.1/24 in the root namespace; node N lives
# in namespace cp-rmqN behind veth cpvethN (root side) with IP $CLUSTER_NET.(10+N).
# `partition N` sets cpvethN down: node N loses the other nodes AND every
# client; `heal N` sets it up again.  PostgreSQL listens on 127.0.0.1 in the
# root namespace.
#
# Environment: CLUSTER_DIR, CLUSTER_NET (10.77.0), PG1_PORT (5433), PG2_PORT
# (5434), CLUSTER_LOCK (lock file serialising mutating commands),
# NODE_BOOT_TIMEOUT (90 s).  Progress goes to stderr; `up` prints the settings
# on stdout.  docs/CLUSTER.md has the details.
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

CLUSTER_DIR=${CLUSTER_DIR:-/dev/shm/campuspay-cluster}
CLUSTER_NET=${CLUSTER_NET:-10.77.0} # a /24 used only for the bridge and namespaces
NODES=(1 2 3)
BRIDGE=cpbr0
RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_USER=guest # guest works over the veths because of `loopback_users = none`
RMQ_PASS=guest
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORTS=([1]=${PG1_PORT:-5433} [2]=${PG2_PORT:-5434})
PG_DB=campuspay
LOCK_FILE=${CLUSTER_LOCK:-/tmp/campuspay-cluster.lock}
NODE_BOOT_TIMEOUT=${NODE_BOOT_TIMEOUT:-90}
# A node that was already running (or was just reconnected) and does not serve within this
# long is stuck, not booting: restarted (rmq_wait_or_restart).
STUCK_TIMEOUT=${STUCK_TIMEOUT:-30}

T0=$EPOCHREALTIME
log() { printf '[cluster %5ss] %s\n' "$(elapsed)" "$*" >&2; }
die() {
    printf '[cluster] ERROR: %s\n' "$*" >&2
    exit 1
}
elapsed() { awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- naming -------------------------------------------------------------------

ns() { echo "cp-rmq$1"; }
veth() { echo "cpveth$1"; }
ip_of() { echo "$CLUSTER_NET.$((10 + $1))"; }
node_name() { echo "cp$1@$(ip_of "$1")"; }
amqp_port() { echo $((5700 + $1)); }
mgmt_port() { echo $((15700 + $1)); }
prom_port() { echo $((15790 + $1)); }
dist_port() { echo $((25700 + $1)); }
rdir() { echo "$CLUSTER_DIR/rmq$1"; }
pgdir() { echo "$CLUSTER_DIR/pg/pg$1"; }
pg_app() { echo "campuspay_pg$1"; }
# Set once instance I's data dir is complete (outside it: pg_basebackup and
# pg_rewind copy data dirs).
pg_ready_marker() { echo "$CLUSTER_DIR/pg/pg$1.ready"; }
other() { echo $((3 - $1)); } # the other PostgreSQL instance

check_node_arg() {
    [[ "${1:-}" =~ ^[1-3]$ ]] || die "expected a node number 1, 2 or 3, got '${1:-}'"
}

# --- small probes ---------------------------------------------------------------

tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# mgmt N PATH [curl args...]: management API call on node N (root namespace).
# A cut-off node fails the connect in 1 s; a live node can take ~10 s to answer
# while it still waits for a peer that was just cut off (stats collection).
mgmt() {
    local n=$1 path=$2
    shift 2
    curl -sf --connect-timeout 1 --max-time 15 -u "$RMQ_USER:$RMQ_PASS" "$@" \
        "http://$(ip_of "$n"):$(mgmt_port "$n")$path"
}

# wait_for SECS WHAT CMD...: poll CMD every 0.25 s; die with WHAT on timeout.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local deadline
    deadline=$(($(date +%s) + secs))
    until "$@"; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.25
    done
    log "$what"
}

# --- RabbitMQ -------------------------------------------------------------------

# in_node N [--as-rabbitmq] CMD...: run CMD inside node N's namespace with the
# environment every RabbitMQ server and CLI process of node N gets: nothing from
# the caller (the system /etc/rabbitmq/rabbitmq-env.conf pins the default node's
# name, epmd address and dist interface; node N's own env file is used instead).
in_node() {
    local n=$1 user=()
    shift
    if [[ "$1" == --as-rabbitmq ]]; then
        user=(runuser -u rabbitmq --)
        shift
    fi
    # 9>&-: the daemons must not inherit (and so hold) the lock file.
    ip netns exec "$(ns "$n")" timeout 120 "${user[@]}" env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 HOME="$CLUSTER_DIR/home" \
        RABBITMQ_CONF_ENV_FILE="$(rdir "$n")/rabbitmq-env.conf" \
        RABBITMQ_FEATURE_FLAGS_FILE="$(rdir "$n")/feature_flags" "$@" 9>&-
}

# ctl N ARGS...: rabbitmqctl against node N, run inside node N's namespace (so
# it works while N is partitioned).
ctl() {
    local n=$1
    shift
    in_node "$n" "$RMQ_BIN/rabbitmqctl" --longnames -n "$(node_name "$n")" "$@"
}

rmq_pid() {
    local f
    f="$(rdir "$1")/pid"
    [[ -s "$f" ]] && cat "$f"
}

# True if node N's Erlang VM (beam) is alive.
rmq_alive() {
    local pid
    pid=$(rmq_pid "$1") || return 1
    # The beam's command line does not name the node; its environment names
    # the node's own env file.
    [[ -d /proc/$pid ]] &&
        { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qx "RABBITMQ_CONF_ENV_FILE=$(rdir "$1")/rabbitmq-env.conf"
}

# True if node N's rabbit application serves AMQP and HTTP (seen from the root
# namespace, as a client sees it).
rmq_serving() {
    tcp_open "$(ip_of "$1")" "$(amqp_port "$1")" && mgmt "$1" /api/overview >/dev/null
}

write_rmq_config() {
    local n=$1 d
    d=$(rdir "$n")
    mkdir -p "$d/mnesia" "$d/log"
    cat >"$d/rabbitmq-env.conf" <<EOF
# node $n of the campuspay test cluster (generated by scripts/cluster.sh)
NODENAME=$(node_name "$n")
USE_LONGNAME=true
CONFIG_FILE=$d/rabbitmq.conf
MNESIA_BASE=$d/mnesia
MNESIA_DIR=$d/mnesia/$(node_name "$n")
LOG_BASE=$d/log
ENABLED_PLUGINS_FILE=$d/enabled_plugins
PID_FILE=$d/pid
DIST_PORT=$(dist_port "$n")
EOF
    echo '[rabbitmq_management,rabbitmq_prometheus].' \
        >"$d/enabled_plugins"
    {
        cat <<EOF
# node $n of the campuspay test cluster (generated by scripts/cluster.sh)
listeners.tcp.default = $(amqp_port "$n")
management.tcp.port = $(mgmt_port "$n")
prometheus.tcp.port = $(prom_port "$n")

# Clients reach the nodes over the veths, not loopback; the built-in guest
# user is refused there unless loopback_users is none.  This is a throw-away
# cluster reachable only from this host, and the test harness grants vhost
# permissions to "guest", so guest/guest it is.
loopback_users = none

# Partition handling: pause_minority.  With three nodes a partition always
# leaves a majority side; the minority node pauses (closes its listeners, so
# clients fail over to the majority) and rejoins by itself once it sees the
# majority again.  Quorum queues need a majority anyway, so pausing the
# minority loses no availability, and unlike autoheal it never restarts a
# node of the surviving side or discards its writes; ignore would leave a
# split classic-metadata store (bindings, users) to be fixed by hand.
cluster_partition_handling = pause_minority

cluster_name = campuspay-test

# Detect a dead peer in ~10 s (default 60 s) so the partition tests are quick.
net_ticktime = 10

# Propose 10 s AMQP heartbeats (default 60 s): a client connected to a node
# that is cut off gets no RST, only silence; heartbeats turn that into a
# connection error within ~20 s instead of ~2 min.
heartbeat = 10

log.file.level = info
log.console = false
EOF
        if ((n != 1)); then
            cat <<EOF

# Join node 1 on first boot (peer discovery), retrying for up to 60 s while
# node 1 is still booting (all three start together).  A node that already
# belongs to the cluster skips this on restart.  'up' checks membership
# afterwards and falls back to rabbitmqctl join_cluster if the node formed a
# cluster of its own.
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(node_name 1)
cluster_formation.discovery_retry_limit = 120
cluster_formation.discovery_retry_interval = 500
EOF
        fi
    } >"$d/rabbitmq.conf"
    chown -R rabbitmq:rabbitmq "$d"
}

rmq_start() {
    local n=$1
    if rmq_alive "$n"; then
        log "rabbit node $n: already running (pid $(rmq_pid "$n"))"
        return
    fi
    rm -f "$(rdir "$n")/pid"
    log "rabbit node $n: starting $(node_name "$n") (amqp $(amqp_port "$n"), http $(mgmt_port "$n"), dist $(dist_port "$n"))"
    # -detached: erl daemonizes; the node writes its own pid file when it boots.
    (cd "$(rdir "$n")" && in_node "$n" --as-rabbitmq "$RMQ_BIN/rabbitmq-server" -detached) ||
        die "rabbit node $n: rabbitmq-server -detached failed"
}

rmq_wait_serving() {
    local n=$1
    if ! wait_for "$NODE_BOOT_TIMEOUT" "rabbit node $n: serving on $(ip_of "$n"):$(amqp_port "$n")" rmq_serving "$n"; then
        printf '[cluster] --- last lines of %s ---\n' "$(rdir "$n")/log/$(node_name "$n").log" >&2
        tail -n 30 "$(rdir "$n")/log/$(node_name "$n").log" >&2 2>/dev/null || true
        die "rabbit node $n did not serve AMQP+HTTP within ${NODE_BOOT_TIMEOUT}s (logs in $(rdir "$n")/log)"
    fi
}

# Waits for node N to serve; a node that is alive but still does not serve after
# STUCK_TIMEOUT s is restarted. After a partition heals, Erlang's global name server can hang
# while the node rejoins (RabbitMQ logs "Global hang workaround: global state on ... seems
# broken" and the boot never finishes); a restart clears it, as an operator would do.
rmq_wait_or_restart() {
    local n=$1 pid
    if wait_for "$STUCK_TIMEOUT" "rabbit node $n: serving on $(ip_of "$n"):$(amqp_port "$n")" rmq_serving "$n"; then
        return
    fi
    log "rabbit node $n: alive but not serving after ${STUCK_TIMEOUT}s (stuck rejoining); restarting it"
    pid=$(rmq_pid "$n") && kill -9 "$pid" 2>/dev/null
    wait_for 10 "rabbit node $n: stopped" rmq_dead "$n" || die "rabbit node $n: pid $pid did not die"
    rmq_start "$n"
    rmq_wait_serving "$n"
}

# Names of the running cluster nodes as node N's management API sees them.
running_nodes() {
    mgmt "$1" /api/nodes | grep -o '"name":"[^"]*","[^{]*"running":true' | sed 's/^"name":"\([^"]*\)".*/\1/' | sort
}

all_node_names() {
    local n
    for n in "${NODES[@]}"; do node_name "$n"; done | sort
}

# True if node N serves and sees all three nodes running.
rmq_sees_all() {
    [[ "$(running_nodes "$1" 2>/dev/null)" == "$(all_node_names)" ]]
}

# True if node M's management API answers and lists node N as not running.
rmq_sees_down() {
    local body
    body=$(running_nodes "$1" 2>/dev/null) || return 1
    ! grep -qx "$(node_name "$2")" <<<"$body"
}

rmq_dead() { ! rmq_alive "$1"; }

# True if node N's VM runs but its rabbit application does not (paused minority).
rmq_paused() {
    [[ "$(ctl "$1" eval 'rabbit:is_running().' 2>/dev/null)" == false ]]
}

# Node 1's cluster members (disk nodes), one per line.
rmq_members_of_1() {
    ctl 1 cluster_status --formatter json 2>/dev/null | grep -o '"disk_nodes":\[[^]]*\]' |
        grep -o '"[^"]*@[^"]*"' | tr -d '"'
}

rmq_join() {
    local n=$1
    log "rabbit node $n: not a member of node 1's cluster; join_cluster"
    local out
    out="$(rdir "$n")/join.log"
    ctl "$n" stop_app >"$out" 2>&1 || die "rabbit node $n: stop_app failed (see $out)"
    ctl "$n" reset >>"$out" 2>&1 || die "rabbit node $n: reset failed (see $out)"
    ctl "$n" join_cluster "$(node_name 1)" >>"$out" 2>&1 ||
        die "rabbit node $n: join_cluster $(node_name 1) failed (see $out)"
    ctl "$n" start_app >>"$out" 2>&1 || die "rabbit node $n: start_app failed (see $out)"
}

# --- network namespaces ----------------------------------------------------------

net_up() {
    have ip || die "iproute2 (ip) is needed"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        # Refuse a subnet that is already in use on this machine.
        if ip -4 -o addr show | grep -v " $BRIDGE " | grep -q " $CLUSTER_NET\."; then
            die "$CLUSTER_NET.0/24 is already used by another interface; set CLUSTER_NET"
        fi
        log "net: bridge $BRIDGE $CLUSTER_NET.1/24"
        ip link add "$BRIDGE" type bridge forward_delay 0
        ip addr add "$CLUSTER_NET.1/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    local n
    for n in "${NODES[@]}"; do
        if ! ip netns list | grep -qw "$(ns "$n")"; then
            log "net: namespace $(ns "$n") with $(ip_of "$n")/24"
            ip netns add "$(ns "$n")"
        fi
        ip -n "$(ns "$n")" link set lo up
        if ! ip link show "$(veth "$n")" >/dev/null 2>&1; then
            ip link add "$(veth "$n")" type veth peer name eth0 netns "$(ns "$n")"
            ip -n "$(ns "$n")" addr add "$(ip_of "$n")/24" dev eth0
            ip link set "$(veth "$n")" master "$BRIDGE"
        fi
        ip -n "$(ns "$n")" link set eth0 up
        ip link set "$(veth "$n")" up
    done
}

net_down() {
    local n
    for n in "${NODES[@]}"; do
        ip link del "$(veth "$n")" 2>/dev/null || true
        ip netns del "$(ns "$n")" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

# --- PostgreSQL -------------------------------------------------------------------

as_pg() { (cd "$CLUSTER_DIR/pg" && runuser -u postgres -- env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$@" 9>&-); }
pg_ctl() {
    local i=$1
    shift
    as_pg "$PG_BIN/pg_ctl" -D "$(pgdir "$i")" "$@"
}
# psql on instance I over TCP (as a client would connect).
pg_sql() {
    local i=$1
    shift
    psql -w -X -q -t -A -h 127.0.0.1 -p "${PG_PORTS[$i]}" -U postgres -d postgres "$@"
}
pg_running() { [[ -d "$(pgdir "$1")" ]] && pg_ctl "$1" status >/dev/null 2>&1; }
pg_ready() { pg_isready -q -h 127.0.0.1 -p "${PG_PORTS[$1]}" >/dev/null 2>&1; }
# Prints t (standby) or f (primary); fails if the instance does not answer.
pg_in_recovery() { pg_sql "$1" -c 'select pg_is_in_recovery()' 2>/dev/null; }
pg_is_primary() { [[ "$(pg_in_recovery "$1")" == f ]]; }

pg_start() {
    local i=$1
    if pg_running "$i"; then
        return
    fi
    if tcp_open 127.0.0.1 "${PG_PORTS[$i]}"; then
        die "postgres pg$i: port ${PG_PORTS[$i]} on 127.0.0.1 is taken by another process (set PG1_PORT/PG2_PORT)"
    fi
    log "postgres pg$i: starting on 127.0.0.1:${PG_PORTS[$i]}"
    pg_ctl "$i" -l "$CLUSTER_DIR/pg/pg$i.log" -w -t 60 start >/dev/null ||
        die "postgres pg$i did not start (see $CLUSTER_DIR/pg/pg$i.log)"
}

pg_init_primary() {
    local d
    d=$(pgdir 1)
    if [[ -f "$(pg_ready_marker 1)" ]]; then
        return
    fi
    rm -rf "$d"
    log "postgres pg1: initdb"
    as_pg "$PG_BIN/initdb" -D "$d" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$CLUSTER_DIR/pg/initdb.log" 2>&1 ||
        die "initdb failed (see $CLUSTER_DIR/pg/initdb.log)"
    # Settings shared by both instances (pg_basebackup copies this file);
    # per-instance ones go to postgresql.auto.conf.
    cat >>"$d/postgresql.conf" <<EOF

# --- campuspay test cluster (scripts/cluster.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$CLUSTER_DIR/pg/run'
max_connections = 200
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_log_hints = on            # lets pg_rewind turn an old primary into a standby
wal_keep_size = 64MB          # ... and keeps the WAL pg_rewind reads from it
hot_standby = on
synchronous_commit = on
wal_retrieve_retry_interval = 1s  # a standby reconnects within 1 s (default 5 s)
EOF
    cat >>"$d/postgresql.auto.conf" <<EOF
port = ${PG_PORTS[1]}
cluster_name = '$(pg_app 1)'
EOF
    chown postgres:postgres "$d/postgresql.conf" "$d/postgresql.auto.conf"
    pg_start 1
    pg_sql 1 -c "select pg_create_physical_replication_slot('$(pg_app 2)')" >/dev/null ||
        die "could not create the replication slot on pg1"
    pg_sql 1 -c "create database $PG_DB" >/dev/null || die "could not create database $PG_DB"
    touch "$(pg_ready_marker 1)"
}

# pg_make_standby I: base backup of the other (primary) instance into pg I.
pg_make_standby() {
    local i=$1 p d
    p=$(other "$i")
    d=$(pgdir "$i")
    rm -rf "$d" "$(pg_ready_marker "$i")"
    log "postgres pg$i: pg_basebackup -R from pg$p"
    as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "${PG_PORTS[$p]}" -U postgres -D "$d" \
        -R -X stream -S "$(pg_app "$i")" -c fast >"$CLUSTER_DIR/pg/basebackup.log" 2>&1 ||
        die "pg_basebackup failed (see $CLUSTER_DIR/pg/basebackup.log)"
    pg_standby_conf "$i"
    touch "$(pg_ready_marker "$i")"
}

# Per-instance settings of a standby I following the other instance.  It has
# no synchronous_standby_names of its own: once promoted it must not wait for
# a standby that is not there (the dead old primary).
pg_standby_conf() {
    local i=$1 p d
    p=$(other "$i")
    d=$(pgdir "$i")
    cat >>"$d/postgresql.auto.conf" <<EOF
port = ${PG_PORTS[$i]}
cluster_name = '$(pg_app "$i")'
synchronous_standby_names = ''
primary_conninfo = 'host=127.0.0.1 port=${PG_PORTS[$p]} user=postgres application_name=$(pg_app "$i")'
primary_slot_name = '$(pg_app "$i")'
EOF
    chown postgres:postgres "$d/postgresql.auto.conf"
}

# Make primary P wait for standby S on every commit.
pg_require_sync() {
    local p=$1 s=$2
    pg_sql "$p" -c "alter system set synchronous_standby_names = '$(pg_app "$s")'" \
        -c 'select pg_reload_conf()' >/dev/null || die "could not set synchronous_standby_names on pg$p"
}

pg_sync_state() {
    pg_sql "$1" -c "select sync_state from pg_stat_replication where application_name = '$(pg_app "$2")'" 2>/dev/null
}
pg_is_sync() { [[ "$(pg_sync_state "$1" "$2")" == sync ]]; }
pg_is_streaming() {
    [[ "$(pg_sql "$1" -c "select state from pg_stat_replication where application_name = '$(pg_app "$2")'" 2>/dev/null)" == streaming ]]
}

# pg_follow P S: standby S (just started) must stream from primary P; only then
# P is made to wait for it on every commit (doing it earlier would block every
# commit on P if S never connects).
pg_follow() {
    local p=$1 s=$2
    wait_for 30 "postgres: pg$s streams from pg$p" pg_is_streaming "$p" "$s" ||
        die "postgres: pg$s does not stream from pg$p after 30 s (see $CLUSTER_DIR/pg/pg$s.log); pg$p does not wait for it"
    if [[ "$(pg_sql "$p" -c 'show synchronous_standby_names')" != "$(pg_app "$s")" ]]; then
        pg_require_sync "$p" "$s"
    fi
    wait_for 30 "postgres: pg$s is the synchronous standby of pg$p" pg_is_sync "$p" "$s" ||
        die "postgres: pg$s is not a synchronous standby of pg$p after 30 s (see $CLUSTER_DIR/pg/pg$s.log)"
}

pg_up() {
    mkdir -p "$CLUSTER_DIR/pg/run"
    chown postgres:postgres "$CLUSTER_DIR/pg" "$CLUSTER_DIR/pg/run"
    if [[ ! -f "$(pg_ready_marker 1)" && ! -f "$(pg_ready_marker 2)" ]]; then
        pg_init_primary
    fi
    # Which instance is the primary: a running one not in recovery, else one
    # without standby.signal.
    local p="" s i
    for i in 1 2; do
        if pg_running "$i" && pg_is_primary "$i"; then p=$i; fi
    done
    if [[ -z "$p" ]]; then
        for i in 1 2; do
            if [[ -f "$(pg_ready_marker "$i")" && ! -f "$(pgdir "$i")/standby.signal" ]]; then p=$i; fi
        done
    fi
    [[ -n "$p" ]] || die "postgres: found no primary in $CLUSTER_DIR/pg; run 'down' then 'up'"
    s=$(other "$p")
    pg_start "$p"
    if [[ ! -f "$(pg_ready_marker "$s")" ]]; then
        pg_make_standby "$s"
    elif [[ ! -f "$(pgdir "$s")/standby.signal" ]]; then
        log "postgres pg$s: is an old primary (pg$p was promoted); not starting it (see 'pg-rejoin')"
        return
    fi
    pg_start "$s"
    pg_follow "$p" "$s"
}

pg_primary_url_hosts() {
    echo "127.0.0.1:${PG_PORTS[1]},127.0.0.1:${PG_PORTS[2]}"
}

# --- env file -------------------------------------------------------------------

write_env() {
    local n amqp=() http=() names=()
    for n in "${NODES[@]}"; do
        amqp+=("amqp://$RMQ_USER:$RMQ_PASS@$(ip_of "$n"):$(amqp_port "$n")/%2f")
        http+=("http://$RMQ_USER:$RMQ_PASS@$(ip_of "$n"):$(mgmt_port "$n")")
        names+=("$(node_name "$n")")
    done
    local IFS=,
    # Plain `export KEY=value` lines: valid shell and valid make syntax (no
    # quoting needed: no value holds a space, quote, $, & or ;).
    cat >"$CLUSTER_DIR/env.tmp" <<EOF
export CLUSTER_DIR=$CLUSTER_DIR
export AMQP_URLS=${amqp[*]}
export AMQP_URL=${amqp[*]}
export AMQP_URL_1=${amqp[0]}
export AMQP_URL_2=${amqp[1]}
export AMQP_URL_3=${amqp[2]}
export RABBITMQ_MANAGEMENT_URLS=${http[*]}
export RABBITMQ_MANAGEMENT_URL=${http[0]}
export RABBITMQ_NODES=${names[*]}
export DATABASE_URL=postgres://postgres@$(pg_primary_url_hosts)/$PG_DB?target_session_attrs=read-write
export PG1_URL=postgres://postgres@127.0.0.1:${PG_PORTS[1]}/$PG_DB
export PG2_URL=postgres://postgres@127.0.0.1:${PG_PORTS[2]}/$PG_DB
EOF
    mv "$CLUSTER_DIR/env.tmp" "$CLUSTER_DIR/env"
}

# --- commands -------------------------------------------------------------------

cmd_up() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (network namespaces, runuser)"
    [[ -x "$RMQ_BIN/rabbitmq-server" ]] || die "RabbitMQ is not installed ($RMQ_BIN)"
    [[ -x "$PG_BIN/initdb" ]] || die "PostgreSQL 15 is not installed ($PG_BIN)"
    have curl || die "curl is needed"
    have psql || die "psql is needed"
    id rabbitmq >/dev/null 2>&1 || die "no rabbitmq user"
    id postgres >/dev/null 2>&1 || die "no postgres user"

    mkdir -p "$CLUSTER_DIR"
    chmod 755 "$CLUSTER_DIR"
    mkdir -p "$CLUSTER_DIR/home" "$CLUSTER_DIR/pg"
    if [[ ! -s "$CLUSTER_DIR/home/.erlang.cookie" ]]; then
        # The cluster's own cookie; the default node's is never read or changed.
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$CLUSTER_DIR/home/.erlang.cookie")
    fi
    chown -R rabbitmq:rabbitmq "$CLUSTER_DIR/home"
    chmod 400 "$CLUSTER_DIR/home/.erlang.cookie"

    net_up
    local n
    for n in "${NODES[@]}"; do
        [[ -f "$(rdir "$n")/rabbitmq.conf" ]] || write_rmq_config "$n"
    done

    # All three nodes boot together (2 and 3 keep retrying to join node 1
    # until it is up), PostgreSQL meanwhile.
    local was_running=()
    for n in "${NODES[@]}"; do
        if rmq_alive "$n"; then was_running+=("$n"); fi
        rmq_start "$n"
    done
    pg_up
    for n in "${NODES[@]}"; do
        if [[ " ${was_running[*]} " == *" $n "* ]]; then
            rmq_wait_or_restart "$n"
        else
            rmq_wait_serving "$n"
        fi
    done
    local members
    members=$(rmq_members_of_1) || die "rabbit: cluster_status on node 1 failed"
    for n in 2 3; do
        grep -qx "$(node_name "$n")" <<<"$members" || rmq_join "$n"
    done
    local have_nodes
    wait_for 30 "rabbit: cluster of 3 running nodes" rmq_sees_all 1 || {
        have_nodes=$(running_nodes 1 | tr '\n' ' ' || true)
        die "rabbit: node 1 sees running nodes [$have_nodes], want all three"
    }
    if mgmt 1 /api/feature-flags | grep -q '"state":"disabled"'; then
        log "rabbit: enabling all feature flags"
        ctl 1 enable_feature_flag all >/dev/null || die "rabbit: enable_feature_flag all failed"
    fi

    write_env
    log "up: done in $(elapsed)s; settings in $CLUSTER_DIR/env"
    cat "$CLUSTER_DIR/env"
}

# Kill every process of ours: whatever runs in our namespaces, the beams named in
# our pid files (in case a namespace is already gone), and our postmasters.
kill_all() {
    local n pids pid
    for n in "${NODES[@]}"; do
        if ip netns list 2>/dev/null | grep -qw "$(ns "$n")"; then
            pids=$(ip netns pids "$(ns "$n")" 2>/dev/null || true)
            if [[ -n "$pids" ]]; then
                log "down: killing namespace $(ns "$n") processes: $(echo "$pids" | tr '\n' ' ')"
                # shellcheck disable=SC2086 # a list of pids
                kill -9 $pids 2>/dev/null || true
            fi
        fi
        if rmq_alive "$n"; then
            pid=$(rmq_pid "$n")
            log "down: killing rabbit node $n (pid $pid)"
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    local i
    for i in 1 2; do
        if [[ -f "$(pgdir "$i")/postmaster.pid" ]]; then
            pid=$(head -1 "$(pgdir "$i")/postmaster.pid")
            if [[ -d /proc/$pid ]] && grep -q "$(pgdir "$i")" "/proc/$pid/cmdline" 2>/dev/null; then
                log "down: stopping postgres pg$i (pid $pid, immediate)"
                pg_ctl "$i" -m immediate -w stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
            fi
        fi
    done
}

cmd_down() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root"
    kill_all
    log "down: deleting namespaces, veths and $BRIDGE"
    net_down
    # Wait for the killed beams to be reaped before removing their files.
    local n
    for n in "${NODES[@]}"; do
        wait_for 10 "down: rabbit node $n gone" rmq_dead "$n" || true
    done
    if [[ -d "$CLUSTER_DIR" ]]; then
        log "down: removing $CLUSTER_DIR"
        rm -rf "$CLUSTER_DIR"
    fi
    log "down: done in $(elapsed)s (nothing left under $CLUSTER_DIR, no namespaces, no $BRIDGE)"
}

cmd_status() {
    local n i
    [[ -d "$CLUSTER_DIR" ]] || {
        echo "no cluster ($CLUSTER_DIR does not exist)"
        return 0
    }
    echo "== RabbitMQ"
    for n in "${NODES[@]}"; do
        local state link
        link=$(ip -br link show "$(veth "$n")" 2>/dev/null | awk '{print $2}' || true)
        if ! rmq_alive "$n"; then
            state="not running"
        elif rmq_serving "$n"; then
            state="running, serving (pid $(rmq_pid "$n"))"
        else
            state="beam alive (pid $(rmq_pid "$n")), not serving (booting or paused)"
        fi
        printf 'node %s %-16s amqp %s:%s http :%s veth %-5s %s\n' "$n" "$(node_name "$n")" \
            "$(ip_of "$n")" "$(amqp_port "$n")" "$(mgmt_port "$n")" "${link:-none}" "$state"
    done
    for n in "${NODES[@]}"; do
        if rmq_serving "$n"; then
            echo "-- cluster_status as seen by node $n"
            ctl "$n" cluster_status --formatter json 2>/dev/null |
                grep -o '"disk_nodes":[^]]*]\|"running_nodes":[^]]*]\|"partitions":{[^}]*}\|"alarms":[^]]*]' |
                sed 's/^"\([a-z_]*\)":/  \1: /' || true
            break
        fi
    done
    echo "== PostgreSQL"
    for i in 1 2; do
        local role="not running"
        if pg_running "$i"; then
            case "$(pg_in_recovery "$i")" in
            f) role="primary (read-write)" ;;
            t) role="standby (read-only)" ;;
            *) role="running, not answering" ;;
            esac
        fi
        printf 'pg%s 127.0.0.1:%s %s\n' "$i" "${PG_PORTS[$i]}" "$role"
        if [[ "$role" == primary* ]]; then
            pg_sql "$i" -F ' ' -c "select '  replication:', application_name, state, sync_state, replay_lsn from pg_stat_replication" || true
            pg_sql "$i" -c "select '  synchronous_standby_names=' || current_setting('synchronous_standby_names')" || true
        fi
    done
}

cmd_rabbit_kill() {
    check_node_arg "${1:-}"
    local n=$1 pid
    pid=$(rmq_pid "$n") || die "rabbit node $n: no pid file"
    rmq_alive "$n" || die "rabbit node $n is not running"
    kill -9 "$pid"
    wait_for 10 "rabbit node $n: killed (kill -9 $pid)" rmq_dead "$n" || die "pid $pid did not die"
    # epmd in the namespace still lists the dead node until its socket closes; harmless.
}

cmd_rabbit_start() {
    check_node_arg "${1:-}"
    local n=$1
    rmq_start "$n"
    rmq_wait_serving "$n"
    wait_for 60 "rabbit node $n: back in the cluster" rmq_sees_all "$n" ||
        log "WARNING: node $n runs but does not see all three nodes running yet"
}

cmd_partition() {
    check_node_arg "${1:-}"
    local n=$1
    ip link set "$(veth "$n")" down || die "no veth for node $n (is the cluster up?)"
    log "partition: node $n cut off ($(veth "$n") down)"
    if [[ "${2:-}" == --wait ]]; then
        local m
        for m in "${NODES[@]}"; do ((m != n)) && break; done
        wait_for 60 "partition: node $m sees node $n down" rmq_sees_down "$m" "$n" ||
            die "partition: node $m still sees node $n after 60 s"
        wait_for 60 "partition: node $n paused (minority)" rmq_paused "$n" ||
            die "partition: node $n did not pause within 60 s"
    fi
}

cmd_heal() {
    check_node_arg "${1:-}"
    local n=$1
    ip link set "$(veth "$n")" up || die "no veth for node $n (is the cluster up?)"
    log "heal: node $n reconnected ($(veth "$n") up)"
    if [[ "${2:-}" != --no-wait ]]; then
        rmq_wait_or_restart "$n"
        wait_for 60 "heal: node $n back, 3 nodes running" rmq_sees_all "$n" ||
            die "heal: node $n does not see all three nodes running after 60 s"
    fi
}

# rabbit-leader QUEUE [VHOST]: the number (1-3) of the node leading a quorum queue.
cmd_rabbit_leader() {
    local q=${1:?usage: rabbit-leader QUEUE [VHOST]} vhost=${2:-/} n body leader
    local ev eq
    ev=$(printf '%s' "$vhost" | sed 's|%|%25|g; s|/|%2F|g')
    eq=$(printf '%s' "$q" | sed 's|%|%25|g; s|/|%2F|g')
    for n in "${NODES[@]}"; do
        body=$(mgmt "$n" "/api/queues/$ev/$eq" 2>/dev/null) || continue
        leader=$(grep -o '"leader":"[^"]*"' <<<"$body" | head -1 | cut -d'"' -f4)
        [[ -n "$leader" ]] || die "queue '$q' in vhost '$vhost' has no leader (not a quorum queue?)"
        local m
        for m in "${NODES[@]}"; do
            if [[ "$leader" == "$(node_name "$m")" ]]; then
                echo "$m"
                return
            fi
        done
        die "leader $leader is not one of our nodes"
    done
    die "queue '$q' in vhost '$vhost': not found, or no node answered"
}

# Current primary: a running instance not in recovery.
pg_current_primary() {
    local i
    for i in 1 2; do
        if pg_running "$i" && pg_is_primary "$i"; then
            echo "$i"
            return
        fi
    done
    return 1
}

cmd_pg_kill_primary() {
    local p
    p=$(pg_current_primary) || die "postgres: no running primary"
    pg_ctl "$p" -m immediate -w stop >/dev/null || die "pg_ctl stop -m immediate failed on pg$p"
    log "pg-kill-primary: pg$p (127.0.0.1:${PG_PORTS[$p]}) stopped in immediate mode"
}

cmd_pg_promote() {
    local s="" i
    for i in 1 2; do
        if pg_running "$i" && [[ "$(pg_in_recovery "$i")" == t ]]; then s=$i; fi
    done
    [[ -n "$s" ]] || die "postgres: no running standby to promote"
    pg_ctl "$s" -w -t 60 promote >/dev/null || die "pg_ctl promote failed on pg$s"
    # Belt and braces: a promoted node must not wait for a synchronous standby
    # (its own config already has synchronous_standby_names = '').
    pg_sql "$s" -c "alter system set synchronous_standby_names = ''" -c 'select pg_reload_conf()' >/dev/null
    wait_for 30 "pg-promote: pg$s (127.0.0.1:${PG_PORTS[$s]}) is primary (read-write)" pg_is_primary "$s" ||
        die "pg$s still in recovery after promote"
}

# pg-start I: start instance I again (e.g. the primary after pg-kill-primary,
# when nothing was promoted).  Refuses to start an old primary next to a new one.
cmd_pg_start() {
    local i=${1:?usage: pg-start 1|2}
    [[ "$i" == 1 || "$i" == 2 ]] || die "expected 1 or 2"
    local o
    o=$(other "$i")
    if [[ ! -f "$(pgdir "$i")/standby.signal" ]] && pg_running "$o" && pg_is_primary "$o"; then
        die "pg$i is an old primary and pg$o is primary now: use pg-rejoin (split brain otherwise)"
    fi
    pg_start "$i"
    wait_for 30 "pg-start: pg$i accepts connections" pg_ready "$i" || die "pg$i not ready"
}

# pg-stop I: stop instance I (1 or 2) in immediate mode, whatever its role.
cmd_pg_stop() {
    local i=${1:-}
    [[ "$i" == 1 || "$i" == 2 ]] || die "usage: pg-stop 1|2"
    pg_running "$i" || die "pg$i is not running"
    pg_ctl "$i" -m immediate -w stop >/dev/null || die "pg_ctl stop -m immediate failed on pg$i"
    log "pg-stop: pg$i (127.0.0.1:${PG_PORTS[$i]}) stopped in immediate mode"
}

# pg-rejoin: turn the old primary into a synchronous standby of the promoted one
# (pg_rewind), restoring a two-node set-up after pg-kill-primary + pg-promote.
cmd_pg_rejoin() {
    local p o
    p=$(pg_current_primary) || die "postgres: no running primary"
    o=$(other "$p")
    pg_running "$o" && die "pg$o is running; stop it first (pg-kill-primary kills only the primary)"
    pg_sql "$p" -c "select pg_create_physical_replication_slot('$(pg_app "$o")')" >/dev/null 2>&1 || true
    # A freshly promoted primary still has the old timeline in its control file
    # until its first checkpoint; pg_rewind would then see nothing to rewind.
    pg_sql "$p" -c checkpoint >/dev/null || die "checkpoint on pg$p failed"
    log "pg-rejoin: pg_rewind pg$o onto pg$p"
    as_pg "$PG_BIN/pg_rewind" -D "$(pgdir "$o")" \
        --source-server="host=127.0.0.1 port=${PG_PORTS[$p]} user=postgres dbname=postgres" \
        >"$CLUSTER_DIR/pg/rewind.log" 2>&1 || {
        log "pg_rewind failed (see $CLUSTER_DIR/pg/rewind.log); taking a fresh base backup"
        pg_make_standby "$o"
    }
    touch "$(pgdir "$o")/standby.signal"
    chown postgres:postgres "$(pgdir "$o")/standby.signal"
    pg_standby_conf "$o"
    pg_start "$o"
    pg_follow "$p" "$o"
}

usage() {
    cat <<EOF
usage: scripts/cluster.sh COMMAND [ARGS]     (as root; CLUSTER_DIR=$CLUSTER_DIR)

  up [--netns]         start (or complete) the cluster; prints the settings and
                       writes them to \$CLUSTER_DIR/env  (--netns: accepted, the
                       RabbitMQ nodes always run in namespaces)
  down                 stop and delete everything (safe to repeat)
  status               processes, cluster membership, replication
  env                  print \$CLUSTER_DIR/env

  rabbit-kill N        kill -9 node N's Erlang VM
  rabbit-start N       start node N again and wait until it is back in the cluster
  rabbit-leader Q [V]  number of the node leading quorum queue Q (vhost V, default /)
  partition N [--wait] cut node N off from the other nodes and from all clients
                       (--wait: until the others see it down and it has paused)
  heal N [--no-wait]   reconnect node N (waits until it serves and sees 3 nodes)
  ctl N ARGS...        rabbitmqctl against node N (from inside its namespace)

  pg-kill-primary      pg_ctl stop -m immediate on the current primary
  pg-promote           promote the standby (it then needs no synchronous standby)
  pg-start I           start instance I (1 or 2) again, if that is safe
  pg-stop I            stop instance I in immediate mode, whatever its role
  pg-rejoin            make the old primary a synchronous standby of the new one
EOF
}

main() {
    local cmd=${1:-help}
    shift || true
    case "$cmd" in
    up | down | rabbit-kill | rabbit-start | partition | heal | pg-kill-primary | pg-promote | pg-start | pg-stop | pg-rejoin)
        # One mutating command at a time (tests may call helpers concurrently).
        exec 9>"$LOCK_FILE"
        flock -w 300 9 || die "another cluster.sh holds $LOCK_FILE"
        ;;
    esac
    case "$cmd" in
    up)
        [[ "${1:-}" == "" || "${1:-}" == --netns ]] || die "unknown option for up: $1"
        cmd_up
        ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cat "$CLUSTER_DIR/env" ;;
    rabbit-kill) cmd_rabbit_kill "$@" ;;
    rabbit-start) cmd_rabbit_start "$@" ;;
    rabbit-leader) cmd_rabbit_leader "$@" ;;
    partition) cmd_partition "$@" ;;
    heal) cmd_heal "$@" ;;
    ctl)
        check_node_arg "${1:-}"
        ctl "$@"
        ;;
    pg-kill-primary) cmd_pg_kill_primary ;;
    pg-promote) cmd_pg_promote ;;
    pg-start) cmd_pg_start "$@" ;;
    pg-stop) cmd_pg_stop "$@" ;;
    pg-rejoin) cmd_pg_rejoin ;;
    help | -h | --help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
