#!/usr/bin/env bash
# A throw-away RabbitMQ node that speaks AMQP over TLS only (amqps://), with a
# certificate authority made on the spot, for the TLS test and for trying a
# terminal against TLS by hand.  It never touches the machine's default node:
# its own node name, config, ports, mnesia/log/feature-flags directories and
# Erlang cookie (the same approach as scripts/cluster.sh, without namespaces:
# the node listens on 127.0.0.1 only).
#
# NEEDS ROOT: the node runs as the `rabbitmq` user (runuser).  CI and the dev
# machines run as root.
#
# Usage: scripts/tls-node.sh up | down | env | status
#   up      make the CA and the server certificate, start the node, wait until
#           a TLS handshake verified against the CA succeeds; prints the
#           settings (KEY=value lines) on stdout.  Idempotent: on a running
#           node it only checks it and prints the settings.
#   down    kill the node and delete its directory (CA included).  Safe to run
#           twice and after a failed `up`.
#   env     print the settings of a running node.
#   status  say whether the node runs and answers TLS.
#
# Settings printed by `up` and `env`:
#   AMQPS_URL=amqps://guest:guest@127.0.0.1:$TLS_NODE_PORT/%2f
#   TLS_NODE_CA=$TLS_NODE_DIR/ca/ca.pem      (PEM; CAMPUSPAY_AMQP_CA_FILE)
#   TLS_NODE_DIR=...
#
# Environment: TLS_NODE_DIR (default /dev/shm/campuspay-tls-node: RAM-backed,
# so `down` is instant), TLS_NODE_PORT (5681; the Erlang distribution port is
# TLS_NODE_PORT + 20000), NODE_BOOT_TIMEOUT (60 s).  Progress goes to stderr.
#
# Layout of $TLS_NODE_DIR:
#   ca/ca.pem, ca/ca.key       the test CA (exists only here; deleted by down)
#   ca/server.pem, server.key  the node's certificate for 127.0.0.1 and localhost
#   rabbitmq-env.conf, rabbitmq.conf, enabled_plugins, mnesia/, log/, pid
#   home/.erlang.cookie        the node's own cookie (HOME of the node and CLI)
#   env                        the settings
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

TLS_NODE_DIR=${TLS_NODE_DIR:-/dev/shm/campuspay-tls-node}
TLS_NODE_PORT=${TLS_NODE_PORT:-5681}
NODE_BOOT_TIMEOUT=${NODE_BOOT_TIMEOUT:-60}
DIST_PORT=$((TLS_NODE_PORT + 20000))
NODE_NAME="cptls${TLS_NODE_PORT}@localhost"
RMQ_BIN=/usr/lib/rabbitmq/bin
CA_DIR=$TLS_NODE_DIR/ca

T0=$EPOCHREALTIME
elapsed() { awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { printf "%.1f", a - b }'; }
log() { printf '[tls-node %5ss] %s\n' "$(elapsed)" "$*" >&2; }
die() {
    printf '[tls-node] ERROR: %s\n' "$*" >&2
    exit 1
}

tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# A full TLS handshake, verified against our CA (name and chain), as a client
# would do it.  Port open is not enough: the listener must serve our certificate.
tls_ok() {
    timeout 5 openssl s_client -connect "127.0.0.1:$TLS_NODE_PORT" -CAfile "$CA_DIR/ca.pem" \
        -verify_ip 127.0.0.1 -verify_return_error -brief </dev/null >/dev/null 2>&1
}

node_pid() {
    local f=$TLS_NODE_DIR/pid
    [[ -s "$f" ]] && cat "$f"
}

# True if our node's Erlang VM runs: the pid in our pid file, and that
# process's environment names our env file (a recycled pid is not ours).
node_alive() {
    local pid
    pid=$(node_pid) || return 1
    [[ -d /proc/$pid ]] &&
        { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null |
        grep -qx "RABBITMQ_CONF_ENV_FILE=$TLS_NODE_DIR/rabbitmq-env.conf"
}
node_dead() { ! node_alive; }

settings() {
    cat <<EOF
AMQPS_URL=amqps://guest:guest@127.0.0.1:$TLS_NODE_PORT/%2f
TLS_NODE_CA=$CA_DIR/ca.pem
TLS_NODE_DIR=$TLS_NODE_DIR
EOF
}

# The CA (self-signed, 2 days) and the node's certificate, signed by it, for
# 127.0.0.1 and localhost.  EC P-256: instant to generate, and both rustls and
# Erlang's ssl take it.  The extensions are what a strict verifier (webpki)
# expects: CA:TRUE + keyCertSign on the CA; CA:FALSE, serverAuth and the SANs
# on the leaf.
make_certs() {
    mkdir -p "$CA_DIR"
    (
        cd "$CA_DIR"
        umask 077
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj "/CN=campuspay throw-away test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout server.key -out server.csr -subj "/CN=localhost"
        cat >server.ext <<EOF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
EOF
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -days 2 -extfile server.ext -out server.pem
        rm -f server.csr server.ext ca.srl
        chmod 644 ca.pem server.pem
    ) >"$TLS_NODE_DIR/openssl.log" 2>&1 || die "openssl failed (see $TLS_NODE_DIR/openssl.log)"
}

write_config() {
    mkdir -p "$TLS_NODE_DIR/mnesia" "$TLS_NODE_DIR/log" "$TLS_NODE_DIR/home"
    cat >"$TLS_NODE_DIR/rabbitmq-env.conf" <<EOF
# campuspay throw-away TLS node (generated by scripts/tls-node.sh)
NODENAME=$NODE_NAME
CONFIG_FILE=$TLS_NODE_DIR/rabbitmq.conf
MNESIA_BASE=$TLS_NODE_DIR/mnesia
MNESIA_DIR=$TLS_NODE_DIR/mnesia/$NODE_NAME
LOG_BASE=$TLS_NODE_DIR/log
ENABLED_PLUGINS_FILE=$TLS_NODE_DIR/enabled_plugins
PID_FILE=$TLS_NODE_DIR/pid
DIST_PORT=$DIST_PORT
# Like the default node: epmd and the distribution on loopback only.
ERL_EPMD_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
    # No plugins: the test declares what it needs over AMQP, and the node boots faster.
    echo '[].' >"$TLS_NODE_DIR/enabled_plugins"
    cat >"$TLS_NODE_DIR/rabbitmq.conf" <<EOF
# campuspay throw-away TLS node (generated by scripts/tls-node.sh)
# AMQP over TLS only, on loopback; no plain AMQP listener at all.
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$TLS_NODE_PORT
ssl_options.cacertfile = $CA_DIR/ca.pem
ssl_options.certfile = $CA_DIR/server.pem
ssl_options.keyfile = $CA_DIR/server.key
# Clients are not asked for a certificate (they log in with user/password).
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
# guest/guest stays loopback-only (the default): the node listens on 127.0.0.1.
log.file.level = warning
log.console = false
EOF
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$TLS_NODE_DIR/home/.erlang.cookie")
    chmod 400 "$TLS_NODE_DIR/home/.erlang.cookie"
    chown -R rabbitmq:rabbitmq "$TLS_NODE_DIR"
}

# Every server process gets this environment and nothing from the caller: the
# system /etc/rabbitmq/rabbitmq-env.conf pins the default node's name, so our
# own env file is named instead.
in_node() {
    runuser -u rabbitmq -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin \
        LANG=C.UTF-8 LC_ALL=C.UTF-8 HOME="$TLS_NODE_DIR/home" \
        RABBITMQ_CONF_ENV_FILE="$TLS_NODE_DIR/rabbitmq-env.conf" \
        RABBITMQ_FEATURE_FLAGS_FILE="$TLS_NODE_DIR/feature_flags" "$@"
}

cmd_up() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (the node runs as the rabbitmq user)"
    [[ -x "$RMQ_BIN/rabbitmq-server" ]] || die "RabbitMQ is not installed ($RMQ_BIN)"
    # The openssl command makes the certificates; ca-certificates fills the
    # system store that campuspay's TLS client loads (rustls-native-certs: an
    # empty store is an error even with a CA bundle of our own).  Debian's
    # ca-certificates depends on openssl.
    if ! command -v openssl >/dev/null || [[ ! -d /etc/ssl/certs ]]; then
        log "up: apt-get install openssl ca-certificates"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl ca-certificates >/dev/null ||
            die "could not install openssl and ca-certificates"
    fi
    id rabbitmq >/dev/null 2>&1 || die "no rabbitmq user"
    if node_alive; then
        tls_ok || die "node $NODE_NAME runs (pid $(node_pid)) but does not answer TLS on $TLS_NODE_PORT; run down"
        log "up: $NODE_NAME already running (pid $(node_pid))"
        settings
        return
    fi
    for port in "$TLS_NODE_PORT" "$DIST_PORT"; do
        ! tcp_open 127.0.0.1 "$port" || die "port $port on 127.0.0.1 is taken; set TLS_NODE_PORT"
    done
    # Whatever a failed run left behind goes; nothing of it is running.
    rm -rf "$TLS_NODE_DIR"
    mkdir -p "$TLS_NODE_DIR"
    chmod 755 "$TLS_NODE_DIR"
    make_certs
    log "up: CA and server certificate made in $CA_DIR"
    write_config
    log "up: starting $NODE_NAME (amqps 127.0.0.1:$TLS_NODE_PORT, dist $DIST_PORT)"
    # -detached: erl daemonizes and the node writes its pid file.  No stdio is
    # handed to the daemon, so a caller reading our stdout gets its EOF.
    (cd "$TLS_NODE_DIR" && in_node "$RMQ_BIN/rabbitmq-server" -detached) \
        </dev/null >"$TLS_NODE_DIR/start.log" 2>&1 ||
        die "rabbitmq-server -detached failed (see $TLS_NODE_DIR/start.log)"
    local deadline=$((SECONDS + NODE_BOOT_TIMEOUT))
    until tls_ok; do
        if ((SECONDS >= deadline)); then
            tail -n 30 "$TLS_NODE_DIR/log/$NODE_NAME.log" >&2 2>/dev/null || true
            die "$NODE_NAME did not answer TLS within ${NODE_BOOT_TIMEOUT}s (logs in $TLS_NODE_DIR/log)"
        fi
        sleep 0.2
    done
    settings >"$TLS_NODE_DIR/env"
    log "up: serving TLS (handshake verified against the CA); done in $(elapsed)s"
    settings
}

cmd_down() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root"
    if node_alive; then
        local pid
        pid=$(node_pid)
        # A throw-away node: nothing to flush, so no graceful stop (rabbitmqctl
        # stop costs seconds).  Its children (erl_child_setup, inet_gethost) end
        # with it.
        log "down: killing $NODE_NAME (pid $pid)"
        kill -9 "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while node_alive && ((SECONDS < deadline)); do sleep 0.05; done
        node_dead || die "pid $pid did not die"
    fi
    if [[ -d "$TLS_NODE_DIR" ]]; then
        rm -rf "$TLS_NODE_DIR"
    fi
    log "down: done in $(elapsed)s (nothing left under $TLS_NODE_DIR)"
}

cmd_status() {
    if node_alive; then
        if tls_ok; then
            echo "$NODE_NAME running (pid $(node_pid)), TLS on 127.0.0.1:$TLS_NODE_PORT"
        else
            echo "$NODE_NAME running (pid $(node_pid)), NOT answering TLS on $TLS_NODE_PORT"
            return 1
        fi
    else
        echo "not running"
        return 1
    fi
}

case "${1:-help}" in
up) cmd_up ;;
down) cmd_down ;;
env)
    node_alive || die "not running"
    settings
    ;;
status) cmd_status ;;
help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
