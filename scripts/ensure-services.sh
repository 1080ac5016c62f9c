#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ (with the management and Prometheus plugins,
# all feature flags enabled) are installed and
# running on a Debian machine without systemd, then wait until both accept
# connections. Also makes sure promtool (Debian's prometheus package) is there:
# the tests check the alerting rules in deploy/prometheus/ with it; and jq, for the benches.
# With --browser (make test) also the browser tests' tools: Chromium,
# chromedriver, ffmpeg (the fake camera's video) and a CJK font.
#
# Fast path: when everything is already up this only does a handful of local
# TCP/HTTP probes (well under a second).  It never overwrites a system
# config; the only config change it may make is prepending a trust line for
# user "postgres" from 127.0.0.1 to pg_hba.conf, and only if TCP login as
# postgres currently fails with an authentication error.
set -euo pipefail

# Debian puts the RabbitMQ tools in /usr/sbin, which is not always on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PG_HOST=127.0.0.1
PG_PORT=5432
RMQ_HOST=127.0.0.1
RMQ_PORT=5672
RMQ_MGMT_PORT=15672
RMQ_MGMT_USER=guest
RMQ_MGMT_PASS=guest
RMQ_PROMETHEUS_PORT=15692
# RabbitMQ 3.x hands out file handles (sockets and files) from a budget of about 90 % of its
# process's open-file limit. Started through Debian's wrapper (`su rabbitmq`), the node gets
# su's soft limit of 1024, a budget of 927: the test suite and a benchmark against the same
# node run out of it, and every new connection then waits inside the broker, before its
# "accepting AMQP connection" line and without a word to the client, until another one
# closes (a client sees its handshake time out). The node is started with its soft limit
# raised to the hard one, and a running node below this many is reported.
RMQ_MIN_FDS=4096
# rabbitmq_prometheus: the queue metrics the alerts of deploy/prometheus/ use (port 15692).
# (Settlement shards are routed by card id modulo the shard count on a direct exchange: the
# consistent-hash exchange plugin is not needed.)
RMQ_PLUGINS=(rabbitmq_management rabbitmq_prometheus)

log() { printf '[setup] %s\n' "$*"; }
warn() { printf '[setup] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[setup] ERROR: %s\n' "$*" >&2
    exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }

# Commands a non-root user has to run (printed before exiting).
NEED_ROOT_CMDS=()
need_root() {
    NEED_ROOT_CMDS+=("$@")
}
bail_if_need_root() {
    if ((${#NEED_ROOT_CMDS[@]})); then
        printf '[setup] ERROR: %s\n' "$1" >&2
        printf '[setup] Not running as root; please run these commands (as root / with sudo) and retry:\n' >&2
        local c
        for c in "${NEED_ROOT_CMDS[@]}"; do
            printf '    %s\n' "$c" >&2
        done
        exit 1
    fi
}

APT_UPDATED=0
PG_INSTALL_QUEUED=0
apt_install() {
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# tcp_open HOST PORT: true if something accepts TCP connections there.
tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# mgmt_get PATH: print the body of a management API GET (fails on non-2xx).
# Uses curl when available, otherwise plain HTTP/1.0 over bash's /dev/tcp.
mgmt_get() {
    local path=$1
    if have curl; then
        curl -sf --max-time 5 -u "$RMQ_MGMT_USER:$RMQ_MGMT_PASS" \
            "http://$RMQ_HOST:$RMQ_MGMT_PORT$path"
        return
    fi
    local auth resp
    auth=$(printf '%s:%s' "$RMQ_MGMT_USER" "$RMQ_MGMT_PASS" | base64 -w0)
    # shellcheck disable=SC2016 # expanded by the inner bash
    resp=$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: %s:%s\r\nAuthorization: Basic %s\r\nAccept: application/json\r\n\r\n" \
            "$3" "$1" "$2" "$4" >&3
        cat <&3' _ "$RMQ_HOST" "$RMQ_MGMT_PORT" "$path" "$auth" 2>/dev/null) || return 1
    [[ "${resp%%$'\r'*}" =~ ^HTTP/1\.[01]\ 2[0-9][0-9] ]] || return 1
    printf '%s' "${resp#*$'\r\n\r\n'}"
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
    log "$what: ready"
}

# Same, silent (used for the final sanity check).
still_up() {
    local secs=$1
    shift
    local deadline=$((SECONDS + secs))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

###############################################################################
# PostgreSQL
###############################################################################

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }

pg_version() {
    # Highest installed major version with a config dir.
    local v
    # shellcheck disable=SC2012 # version dirs are plain names
    v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1 || true)
    printf '%s' "$v"
}

pg_installed() {
    have pg_ctlcluster && [[ -n "$(pg_version)" ]]
}

ensure_libpq_dev() {
    if [[ -f /usr/include/postgresql/libpq-fe.h ]] || ((PG_INSTALL_QUEUED)); then
        return
    fi
    if is_root; then
        apt_install libpq-dev
    else
        need_root "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libpq-dev"
    fi
}

ensure_postgres_running() {
    if have pg_isready && pg_ready; then
        log "postgresql: already accepting connections on $PG_HOST:$PG_PORT"
        return
    fi

    if ! pg_installed; then
        if is_root; then
            apt_install postgresql postgresql-contrib libpq-dev
        else
            need_root "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql postgresql-contrib libpq-dev"
            PG_INSTALL_QUEUED=1
            need_root "pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql | head -1) main start"
            return
        fi
    fi

    local ver
    ver=$(pg_version)
    [[ -n "$ver" ]] || die "postgresql: no cluster version found under /etc/postgresql"
    if ! is_root; then
        need_root "pg_ctlcluster --skip-systemctl-redirect $ver main start"
        return
    fi
    if [[ ! -d "/etc/postgresql/$ver/main" ]]; then
        log "postgresql: creating cluster $ver/main"
        pg_createcluster "$ver" main >/dev/null
    fi
    log "postgresql: starting cluster $ver/main"
    # "start" fails if the cluster is already running (e.g. on another port);
    # the readiness wait below is the real check.
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
        warn "pg_ctlcluster start returned non-zero; waiting anyway"
    wait_until 30 "postgresql" pg_ready ||
        die "postgresql did not accept connections on $PG_HOST:$PG_PORT within 30 s (see /var/log/postgresql/)"
}

ensure_postgres_trust() {
    local out
    if out=$(psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc 'select 1' 2>&1); then
        return
    fi
    if ! grep -qiE 'authentication failed|no password supplied|no pg_hba.conf entry|password' <<<"$out"; then
        die "postgresql: cannot connect as postgres over TCP: $out"
    fi
    if ! is_root; then
        need_root "sed -i '1i host all postgres 127.0.0.1/32 trust' \"\$(su postgres -c \"psql -tAc 'show hba_file'\")\""
        need_root "su postgres -c \"psql -tAc 'select pg_reload_conf()'\""
        bail_if_need_root "postgresql: TCP login as postgres@127.0.0.1 needs trust auth ($out)"
    fi
    local hba
    hba=$(su postgres -c "psql -tAc 'show hba_file'" | tr -d '[:space:]')
    [[ -f "$hba" ]] || die "postgresql: could not locate pg_hba.conf (got '$hba')"
    log "postgresql: enabling trust auth for postgres@127.0.0.1 in $hba"
    cp -p "$hba" "$hba.campuspay.bak"
    sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    su postgres -c "psql -tAc 'select pg_reload_conf()'" >/dev/null
    sleep 0.5
    out=$(psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc 'select 1' 2>&1) ||
        die "postgresql: still cannot log in as postgres after enabling trust: $out"
}

###############################################################################
# RabbitMQ
###############################################################################

rmq_ready() { tcp_open "$RMQ_HOST" "$RMQ_PORT"; }

rmq_node_ok() {
    # Full application startup, not just the port; fall back to the port probe
    # when rabbitmqctl is unusable (e.g. cookie not readable).
    if have rabbitmq-diagnostics; then
        rabbitmq-diagnostics -q check_running >/dev/null 2>&1 && rmq_ready
    else
        rmq_ready
    fi
}

# What the rabbitmq user runs to start the node (Debian's wrapper then starts it itself):
# the open-file soft limit up to the hard one first (see RMQ_MIN_FDS).
rmq_start_as_rabbitmq() {
    local server
    server=$(command -v rabbitmq-server || echo /usr/sbin/rabbitmq-server)
    # shellcheck disable=SC2016 # expanded by the rabbitmq user's shell
    printf 'n=$(ulimit -Hn); [ "$n" = unlimited ] && n=65536; ulimit -n "$n" && exec %s -detached' "$server"
}
rmq_start() { printf "su rabbitmq -s /bin/sh -c '%s'" "$(rmq_start_as_rabbitmq)"; }

# Warns when the running node may hold fewer than RMQ_MIN_FDS file handles (the management
# API's fd_total). Not restarted here: other work may be using it.
check_rabbitmq_fd_limit() {
    local total="" i
    # A node just started shows its limits only with its first statistics, a few seconds on.
    for i in $(seq 1 15); do
        total=$(mgmt_get /api/nodes 2>/dev/null | grep -o '"fd_total":[0-9]*' | head -1 | cut -d: -f2) || true
        [[ -n "$total" ]] && break
        sleep 1
    done
    if [[ -z "$total" ]]; then
        warn "rabbitmq: could not read the node's open-file limit from the management API"
    elif ((total < RMQ_MIN_FDS)); then
        warn "rabbitmq: the node may hold only $total open files (ulimit -n of its process);" \
            "under load (the test suite beside a benchmark) new connections then wait in the" \
            "broker until one closes and clients time out. When nothing else uses it, restart" \
            "it: rabbitmqctl stop && $0"
    else
        log "rabbitmq: open-file limit $total"
    fi
}

ensure_rabbitmq_running() {
    if rmq_ready; then
        log "rabbitmq: already accepting connections on $RMQ_HOST:$RMQ_PORT"
        return
    fi

    if ! have rabbitmq-server; then
        if is_root; then
            apt_install rabbitmq-server
        else
            need_root "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server"
            need_root "$(rmq_start)"
            return
        fi
    fi
    if ! is_root; then
        need_root "$(rmq_start)"
        return
    fi

    # apt's postinst may have launched it already (it usually can't without
    # systemd, but check before starting a second node).
    if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        log "rabbitmq: starting ($(rmq_start))"
        su rabbitmq -s /bin/sh -c "$(rmq_start_as_rabbitmq)"
    fi
    wait_until 60 "rabbitmq" rmq_node_ok ||
        die "rabbitmq did not come up on $RMQ_HOST:$RMQ_PORT within 60 s (see /var/log/rabbitmq/)"
}

mgmt_overview_ok() { mgmt_get /api/overview >/dev/null 2>&1; }

ensure_rabbitmq_plugins() {
    local overview
    # The management API answering means its plugin is enabled; the
    # Prometheus plugin listens on its own port.
    if overview=$(mgmt_get /api/overview 2>/dev/null) &&
        tcp_open "$RMQ_HOST" "$RMQ_PROMETHEUS_PORT"; then
        log "rabbitmq: plugins ${RMQ_PLUGINS[*]} enabled"
        return
    fi

    local enabled missing=() p
    if ! enabled=$(rabbitmq-plugins list -e -m -q 2>/dev/null); then
        if ! is_root; then
            need_root "rabbitmq-plugins enable ${RMQ_PLUGINS[*]}"
            bail_if_need_root "rabbitmq: cannot query/enable plugins as $(id -un)"
        fi
        die "rabbitmq: 'rabbitmq-plugins list' failed"
    fi
    for p in "${RMQ_PLUGINS[@]}"; do
        grep -qx "$p" <<<"$enabled" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        if ! is_root; then
            need_root "rabbitmq-plugins enable ${missing[*]}"
            bail_if_need_root "rabbitmq: plugins not enabled: ${missing[*]}"
        fi
        log "rabbitmq: enabling plugins ${missing[*]}"
        rabbitmq-plugins enable -q "${missing[@]}" >/dev/null
    fi

    if ! have curl && is_root; then
        apt_install curl || warn "could not install curl; using the /dev/tcp fallback"
    fi
    wait_until 60 "rabbitmq management API" mgmt_overview_ok ||
        die "rabbitmq management API on $RMQ_HOST:$RMQ_MGMT_PORT did not answer within 60 s"
    wait_until 30 "rabbitmq prometheus plugin" tcp_open "$RMQ_HOST" "$RMQ_PROMETHEUS_PORT" ||
        die "rabbitmq: nothing listens on $RMQ_HOST:$RMQ_PROMETHEUS_PORT after enabling rabbitmq_prometheus"
}

ensure_rabbitmq_feature_flags() {
    local flags
    if flags=$(mgmt_get /api/feature-flags 2>/dev/null) &&
        [[ "$flags" == \[* && "$flags" != *'"state":"disabled"'* ]]; then
        log "rabbitmq: all feature flags enabled"
        return
    fi
    log "rabbitmq: enabling all feature flags"
    rabbitmqctl -q enable_feature_flag all >/dev/null 2>&1 ||
        warn "'rabbitmqctl enable_feature_flag all' failed; quorum queues with at-least-once dead-lettering need stream_queue"
}

###############################################################################
# promtool
###############################################################################

# jq: make bench derives its half-rate and soak rates from the closed-loop report with it, and
# make bench-cluster builds its table with it.
ensure_jq() {
    have jq && return
    if ! is_root; then
        need_root "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y jq"
        return
    fi
    apt_install jq
}

ensure_promtool() {
    if have promtool; then
        return
    fi
    if ! is_root; then
        need_root "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus"
        return
    fi
    apt_install --no-install-recommends prometheus
    # Only promtool is wanted: where the package could start its Prometheus server, stop it
    # and keep it from starting at boot.
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/prometheus ]]; then
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
    have promtool || die "promtool: not found after installing Debian's prometheus package"
}

###############################################################################
# Browser tests (--browser)
###############################################################################

# Debian's package names; the commands they provide are checked below.
BROWSER_PKGS=(chromium chromium-driver ffmpeg fonts-wqy-microhei)

browser_tools_present() {
    have chromedriver && have ffmpeg && { have chromium || [[ -x /usr/lib/chromium/chromium ]]; } &&
        { ! have fc-list || fc-list :lang=zh 2>/dev/null | grep -q .; }
}

ensure_browser_tools() {
    if browser_tools_present; then
        log "browser tests: chromium, chromedriver and ffmpeg present"
        return
    fi
    if is_root; then
        apt_install "${BROWSER_PKGS[@]}"
        browser_tools_present || die "browser tests: ${BROWSER_PKGS[*]} installed, but a command is still missing"
        log "browser tests: installed ${BROWSER_PKGS[*]}"
    else
        need_root "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${BROWSER_PKGS[*]}"
    fi
}

###############################################################################

main() {
    local browser=0 arg
    for arg in "$@"; do
        case "$arg" in
        --browser) browser=1 ;;
        *) die "unknown option $arg (expected --browser)" ;;
        esac
    done
    ensure_postgres_running
    ensure_libpq_dev
    ensure_rabbitmq_running
    ensure_promtool
    ensure_jq
    if ((browser)); then
        ensure_browser_tools
    fi
    bail_if_need_root "required services are not installed/running"

    ensure_postgres_trust
    ensure_rabbitmq_plugins
    ensure_rabbitmq_feature_flags
    check_rabbitmq_fd_limit

    still_up 30 pg_ready || die "postgresql stopped accepting connections"
    still_up 30 rmq_ready || die "rabbitmq stopped accepting connections"
    log "services ready (postgres $PG_HOST:$PG_PORT, amqp $RMQ_HOST:$RMQ_PORT, management http://$RMQ_HOST:$RMQ_MGMT_PORT)"
}

main "$@"
