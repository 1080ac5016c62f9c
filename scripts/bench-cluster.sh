#!/usr/bin/env bash
# The cost of replication: the same benches against the default single RabbitMQ node and
# PostgreSQL server, then against the local cluster (scripts/cluster.sh: three RabbitMQ nodes,
# quorum queues with three replicas, PostgreSQL with a synchronous standby), in one run so the
# ratios compare like with like on a machine whose load changes. Writes one JSON report per
# run and $OUT/cluster.md (the table docs/PERFORMANCE.md quotes). Run by `make bench-cluster`
# (root: the cluster uses network namespaces). The cluster is deleted afterwards.
#
#   BENCH_OUT (bench-out)   where the reports go ($BENCH_OUT/cluster/)
#   BENCH_SECS (30)         measured seconds of each run
#   BENCH_WARMUP (5)        warm-up seconds of each run
#   BENCH_RATE (200)        the open-loop run's offered payments per second
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=./target/release/campuspay
OUT=${BENCH_OUT:-bench-out}/cluster
SECS=${BENCH_SECS:-30}
WARMUP=${BENCH_WARMUP:-5}
RATE=${BENCH_RATE:-200}

[[ -x $BIN ]] || { echo "bench-cluster: $BIN missing (make bench-cluster builds it)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench-cluster: jq is needed for the table (apt-get install jq)" >&2; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/cluster.md

# One closed-loop and one open-loop run with the current environment's servers.
runs() {
    local name=$1
    echo "[bench-cluster] $name: closed loop, ${SECS}s" >&2
    "$BIN" bench --closed --duration "$SECS" --warmup "$WARMUP" --label "$name closed" --json "$OUT/$name-closed.json"
    echo "[bench-cluster] $name: ${RATE}/s offered, ${SECS}s" >&2
    "$BIN" bench --rate "$RATE" --duration "$SECS" --warmup "$WARMUP" --label "$name ${RATE}/s" --json "$OUT/$name-open.json"
}

runs single

./scripts/cluster.sh up >/dev/null
trap './scripts/cluster.sh down >/dev/null' EXIT
(
    eval "$(./scripts/cluster.sh env)"
    export RABBITMQ_MANAGEMENT_URL="$RABBITMQ_MANAGEMENT_URLS"
    runs cluster
)

field() { jq -r "$2" "$OUT/$1.json"; }
ratio() { jq -rn --argjson a "$1" --argjson b "$2" 'if $b == 0 then "—" else ($a / $b * 100 | round / 100 | tostring) + "×" end'; }
{
    echo "| run | single node | cluster (3 RabbitMQ nodes, sync standby) | cluster / single |"
    echo "|---|---|---|---|"
    for metric in "closed loop, payments/s|closed|.throughput_per_sec" \
        "closed loop, p50 ms|closed|.latency.p50_ms" \
        "closed loop, p99 ms|closed|.latency.p99_ms" \
        "${RATE}/s offered, answered/s|open|.throughput_per_sec" \
        "${RATE}/s offered, p50 ms|open|.latency.p50_ms" \
        "${RATE}/s offered, p99 ms|open|.latency.p99_ms"; do
        IFS='|' read -r label run path <<<"$metric"
        s=$(field "single-$run" "$path | . * 10 | round / 10")
        c=$(field "cluster-$run" "$path | . * 10 | round / 10")
        echo "| $label | $s | $c | $(ratio "$c" "$s") |"
    done
} | tee "$OUT/cluster.md"
