# campuspay developer / CI entry points.
#
#   make services   install/start PostgreSQL + RabbitMQ (scripts/ensure-services.sh)
#   make build      build the campuspay binary (dev profile, shares cache with tests)
#   make db         create the database, run migrations, declare the AMQP topology
#   make demo       services + build + db, then run the demo
#   make demo SERVE=1
#                   the same, then keep the pipeline and the platform running
#                   (the wallet at /app; Ctrl-C stops)
#   make test       services and the browser tests' tools (Chromium,
#                   chromedriver, ffmpeg), then fmt --check, clippy -D warnings,
#                   cargo-deny, all tests (the browser tests must run, not skip;
#                   deploy/ files included: promtool, systemd-analyze), then the
#                   broker-restart fault test on its own, then the cluster
#                   fault tests (test-cluster; root)
#   make deny       cargo-deny: licences, duplicate versions, sources (offline;
#                   the pinned binary from scripts/ensure-cargo-deny.sh)
#   make test-broker-restart
#                   only the fault test that restarts RabbitMQ mid-stream (it
#                   affects everything on the broker, so it runs alone)
#   make cluster    a local 3-node RabbitMQ cluster (network namespaces) and a
#                   PostgreSQL primary + synchronous standby; prints the settings
#                   and writes them to $CLUSTER_DIR/env (docs/CLUSTER.md; root)
#   make cluster-status / cluster-down / cluster-selftest
#                   inspect it / delete it / exercise every fault helper (~1 min)
#   make test-cluster
#                   start the cluster, run the cluster fault tests one at a time
#                   against it (node killed, partition, PostgreSQL failover, two
#                   workers on two nodes), delete it (~5 min; root)
#   make tls-node / tls-node-down
#                   a throw-away RabbitMQ node speaking only amqps:// on 5681 with a
#                   CA made on the spot; prints AMQPS_URL and the CA file (root)
#   make bench      release build, then the raw 5-hop chain baseline, the 1-hop
#                   chain (the POS contract alone) closed and at 200/s offered (the
#                   floor of the low-load targets), pgbench tpcb-like, the
#                   pipeline at max throughput (closed loop), at 200/1000/2000
#                   payments/s and at half the measured maximum offered (open
#                   loop), then a memory soak at 70 % of that maximum for
#                   BENCH_SOAK_SECS (600; 0 skips it); reports and summary.md
#                   (ratios, targets) in bench-out/ (docs/PERFORMANCE.md).
#                   About 23 minutes (11 without the soak).
#   make bench-cluster
#                   the closed loop and 200/s offered on the single default node,
#                   then on the local cluster, and the ratios: the cost of
#                   replication (bench-out/cluster/cluster.md; root; ~4 minutes)
#
# Tests create their own databases and vhosts, so `test` does not need `db`.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
TEST_THREADS ?= 4
BIN := ./target/debug/campuspay

# rustup installs into ~/.cargo/bin, which is not always on PATH (appended, so
# a cargo already on PATH wins).
export PATH := $(PATH):$(HOME)/.cargo/bin

# Connection defaults; values from the environment win.
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/campuspay
AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2f
RABBITMQ_MANAGEMENT_URL ?= http://guest:guest@127.0.0.1:15672
# The demo, the tests and the bench run with the development keys published in the source;
# campuspay refuses to start without real secrets unless CAMPUSPAY_ENV=development.
CAMPUSPAY_ENV ?= development
export DATABASE_URL AMQP_URL RABBITMQ_MANAGEMENT_URL CAMPUSPAY_ENV

export RUST_BACKTRACE = 1

.PHONY: all services build db demo test test-broker-restart test-cluster deny cluster cluster-status cluster-down cluster-selftest tls-node tls-node-down bench bench-cluster fmt clippy clean

all: build

services:
	./scripts/ensure-services.sh

build:
	$(CARGO) build --bin campuspay

# Creates the database named in DATABASE_URL (via the "postgres" maintenance
# database on the same server) if it does not exist yet.
db: services build
	@base="$${DATABASE_URL%%\?*}"; name="$${base##*/}"; admin="$${base%/*}/postgres"; \
	if [[ "$$(psql -w "$$admin" -tAc "select 1 from pg_database where datname = '$$name'")" != 1 ]]; then \
	    echo "[db] creating database $$name"; \
	    psql -w "$$admin" -q -c "create database \"$$name\""; \
	else \
	    echo "[db] database $$name exists"; \
	fi
	$(BIN) migrate
	$(BIN) topology

# SERVE=1: after the scripted lunch hour, keep serving (campuspay demo --serve).
SERVE ?=
demo: services build db
	$(BIN) demo $(if $(filter-out 0,$(SERVE)),--serve)

test:
	./scripts/ensure-services.sh --browser
	./scripts/clean-test-leftovers.sh
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	@# Every locked package, other platforms' too: cargo-deny and the rust-version test read
	@# their manifests offline (`cargo metadata`), and a build downloads only the host's.
	$(CARGO) fetch --locked
	$(MAKE) --no-print-directory deny
	CAMPUSPAY_REQUIRE_BROWSER=1 $(CARGO) test --all-targets -- --test-threads=$(TEST_THREADS)
	$(MAKE) --no-print-directory test-broker-restart
	$(MAKE) --no-print-directory test-cluster

# Licences, duplicate crate versions and sources of the dependency graph (deny.toml), offline:
# no advisory database is fetched.
deny:
	"$$(./scripts/ensure-cargo-deny.sh)" --offline check licenses bans sources

test-broker-restart: services
	$(CARGO) test --test integration broker_stopped_and_started_mid_stream -- --ignored --test-threads=1 --nocapture

# The local cluster (scripts/cluster.sh; docs/CLUSTER.md). Independent of
# `services`: other ports, node names and directories than the default servers.
cluster:
	./scripts/cluster.sh up

cluster-status:
	./scripts/cluster.sh status

cluster-down:
	./scripts/cluster.sh down

cluster-selftest:
	./scripts/cluster-selftest.sh

# The cluster's settings replace the default servers' for these tests only: every node in
# AMQP_URL and RABBITMQ_MANAGEMENT_URL, both PostgreSQL instances in DATABASE_URL. The cluster
# is deleted afterwards whatever the outcome.
test-cluster: services
	$(CARGO) build --tests --bin campuspay
	./scripts/cluster.sh up >/dev/null
	rc=0; ( eval "$$(./scripts/cluster.sh env)"; \
	    export RABBITMQ_MANAGEMENT_URL="$$RABBITMQ_MANAGEMENT_URLS"; \
	    $(CARGO) test --test integration cluster:: -- --ignored --test-threads=1 --nocapture ) || rc=$$?; \
	./scripts/cluster.sh down; exit $$rc

# A throw-away TLS-only RabbitMQ node (scripts/tls-node.sh), for trying amqps:// by hand:
#   make tls-node; AMQP_URL=<AMQPS_URL> CAMPUSPAY_AMQP_CA_FILE=<TLS_NODE_CA> campuspay ...
tls-node:
	./scripts/tls-node.sh up

tls-node-down:
	./scripts/tls-node.sh down

# Benchmarks. Each run makes (and drops) its own database and vhost; nothing else
# should load the machine meanwhile (docs/PERFORMANCE.md).
BENCH_SECS ?= 60
BENCH_LAT_SECS ?= 30
BENCH_WARMUP ?= 10
BENCH_RATES ?= 200 1000 2000
BENCH_SOAK_SECS ?= 600
BENCH_OUT ?= bench-out
BENCH_FLAGS ?=
RBIN := ./target/release/campuspay

bench: services
	$(CARGO) build --release --bin campuspay
	mkdir -p $(BENCH_OUT)
	rm -f $(BENCH_OUT)/*.json $(BENCH_OUT)/*.svg $(BENCH_OUT)/*.log $(BENCH_OUT)/summary.md
	$(RBIN) bench --baseline chain --closed --duration $(BENCH_SECS) --warmup $(BENCH_WARMUP) $(BENCH_FLAGS) \
	    --json $(BENCH_OUT)/chain.json --svg $(BENCH_OUT)/chain.svg
	$(RBIN) bench --baseline pgbench --duration $(BENCH_SECS) \
	    --json $(BENCH_OUT)/pgbench.json --svg $(BENCH_OUT)/pgbench.svg
	$(RBIN) bench --baseline chain --chain-hops 1 --closed --duration $(BENCH_SECS) --warmup $(BENCH_WARMUP) $(BENCH_FLAGS) \
	    --json $(BENCH_OUT)/chain-1hop.json --svg $(BENCH_OUT)/chain-1hop.svg
	$(RBIN) bench --baseline chain --chain-hops 1 --rate 200 --duration $(BENCH_LAT_SECS) --warmup $(BENCH_WARMUP) $(BENCH_FLAGS) \
	    --json $(BENCH_OUT)/chain-1hop-open-200.json --svg $(BENCH_OUT)/chain-1hop-open-200.svg
	$(RBIN) bench --closed --duration $(BENCH_SECS) --warmup $(BENCH_WARMUP) $(BENCH_FLAGS) \
	    --json $(BENCH_OUT)/pipeline-max.json --svg $(BENCH_OUT)/pipeline-max.svg
	for rate in $(BENCH_RATES); do \
	    $(RBIN) bench --rate $$rate --duration $(BENCH_LAT_SECS) --warmup $(BENCH_WARMUP) $(BENCH_FLAGS) \
	        --json $(BENCH_OUT)/pipeline-open-$$rate.json --svg $(BENCH_OUT)/pipeline-open-$$rate.svg; \
	done
	half=$$(jq '.throughput_per_sec * 0.5 | floor' $(BENCH_OUT)/pipeline-max.json); \
	$(RBIN) bench --rate $$half --duration $(BENCH_LAT_SECS) --warmup $(BENCH_WARMUP) $(BENCH_FLAGS) \
	    --json $(BENCH_OUT)/pipeline-open-half.json --svg $(BENCH_OUT)/pipeline-open-half.svg
	if [[ "$(BENCH_SOAK_SECS)" != 0 ]]; then \
	    soak=$$(jq '.throughput_per_sec * 0.7 | floor' $(BENCH_OUT)/pipeline-max.json); \
	    $(RBIN) bench --rate $$soak --duration $(BENCH_SOAK_SECS) --warmup $(BENCH_WARMUP) $(BENCH_FLAGS) \
	        --json $(BENCH_OUT)/pipeline-soak.json --svg $(BENCH_OUT)/pipeline-soak.svg; \
	fi
	$(RBIN) bench --summarize $(BENCH_OUT)

# The same closed- and open-loop benches on the single default node and on the local cluster,
# in one run, and their ratios (scripts/bench-cluster.sh; root). About 4 minutes.
bench-cluster: services
	$(CARGO) build --release --bin campuspay
	./scripts/bench-cluster.sh

fmt:
	$(CARGO) fmt

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
