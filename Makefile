# orch_lease — every entry point installs what it needs first (scripts/setup.sh) and is safe to rerun.
# Recipes that source scripts/lib.sh need bash.
SHELL := /bin/bash
.PHONY: demo test test-matrix test-ha model soak bench bench-history setup setup-test install package test-package dist python-dist lint clean help

demo:        ## Replay the incident: five actor processes race with and without orch_lease
	scripts/demo.sh

test:        ## Every test: in-process, pg_regress, real-connection races and the incident regression
	scripts/test.sh

test-matrix: ## In-process, pg_regress and isolation tests on PostgreSQL 14, 16, 17 and 18 (make test covers 15)
	scripts/matrix.sh

test-ha: setup-test  ## Only the failover tests: promotions by hand (synchronous: nothing lost; lagging asynchronous: losses reported), a move by logical replication, five failovers under Patroni + etcd, PgBouncer in transaction pooling
	. scripts/lib.sh && lock_take && install_debug && scripts/ha-test.sh && scripts/logical-move-test.sh && scripts/patroni-test.sh && scripts/pgbouncer-test.sh

model:       ## The protocol model at a larger size (A actors, I items, C crashes; default 2 2 2): states, depth, time
	cd model && cargo run --quiet --release --bin check -- --actors $${A:-2} --items $${I:-2} --crashes $${C:-2}

soak:        ## The long soak with injected faults (figures for docs/reliability.md)
	scripts/soak.sh

bench:       ## Benchmarks against raw SQL, a PL/pgSQL twin and advisory locks; writes docs/benchmarks.md
	scripts/bench.sh

bench-history: ## What the lease history costs: orch_lease.history = all against takeovers and raw SQL
	bench/history.sh

setup:       ## What building needs: PostgreSQL 15 with headers, clang, cargo-pgrx, cargo pgrx init (only what is missing)
	scripts/setup.sh

setup-test:  ## setup, and what the tests and the demo need besides (pg_cron, Node.js, Python, sudo)
	scripts/setup.sh --test

install: setup  ## Build and install the extension into the system PostgreSQL 15
	. scripts/lib.sh && install_release

package:     ## postgresql-<major>-orch-lease_<version>_amd64.deb for PostgreSQL 14-18, SHA256SUMS, lintian: target/packages/
	scripts/package.sh

test-package: ## The packages installed with apt-get (15) or unpacked (14, 16-18) and tested, no cargo; run make package first
	scripts/test-package.sh

dist:        ## The PGXN release orch_lease-<version>.zip (git archive of HEAD) in target/, checked and built from
	scripts/dist.sh

python-dist: ## The Python client's sdist and wheel in target/python-dist, checked with twine check (publishing: see the script)
	scripts/python-dist.sh

lint: setup  ## rustfmt and clippy, warnings are errors; no `|| true` hiding a test command's failure, no typed-in count
	scripts/or-true-check.py
	scripts/typed-count-check.py
	cargo fmt --all -- --check
	cd harness && cargo fmt -- --check
	cargo clippy --all-targets --features "pg15 pg_test" -- -D warnings
	cd harness && cargo clippy --all-targets -- -D warnings
	cd model && cargo fmt -- --check
	cd model && cargo clippy --all-targets -- -D warnings

clean:       ## Remove every build output (extension, harness, model)
	cargo clean
	cd harness && cargo clean
	cd model && cargo clean

help:        ## This list: each target and what it does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:[^#]*## /\t/' | expand -t 16
