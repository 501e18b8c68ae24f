# heapster: `make run` and `make test` are all a new machine needs (see README.md).

CARGO ?= cargo
SCENARIO ?= fixtures/small
WORKERS ?= 1

.PHONY: run test deps lint bench replay fixtures golden fixture-server clean

## Replay the bundled scenario into the log sink: a per-window table of nodes and busiest pods.
run:
	$(CARGO) run --quiet -p heapster -- --source=replay:$(SCENARIO) -w $(WORKERS)

## Install what the tests need (influxd, etcd, prometheus, kubectl), then run every test, formatting and lints.
test: deps
	$(CARGO) fmt --all --check
	$(CARGO) test --workspace --all-targets
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Test dependencies from Debian's packages, when absent: influxd, etcd, prometheus, kubectl.
deps:
	scripts/test-deps.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Throughput harness (1,000 nodes x 30 pods, -w 1 and -w 2), the cAdvisor harness (1,000 hosts x
## 30 pods), the events harness (a 100,000-event burst; memory under a TTL), the live harness
## (fixture server and collector as processes, live beside replay, null sink and InfluxDB), the
## sink-outage harness (disk buffer through a dead InfluxDB), the Google sinks' encoding (a
## 1,000 x 30 window into Cloud Monitoring series, 100,000 events into Cloud Logging entries), a
## replay timed alone and under a 10,000-request storm at the HTTP API, cluster mode (each process's
## cost against one process: 20,000 nodes replayed by 4 processes, 5,000 live by 2), and criterion
## micro-benchmarks.
bench:
	$(CARGO) bench --bench throughput
	$(CARGO) bench --bench cadvisor
	$(CARGO) bench --bench events
	$(CARGO) bench --bench live
	$(CARGO) bench --bench sink_outage
	$(CARGO) bench --bench google
	$(CARGO) bench --bench api_storm
	$(CARGO) bench --bench cluster
	$(CARGO) bench --bench micro

## Replay any scenario: make replay SCENARIO=dir WORKERS=2
replay:
	$(CARGO) run --release --quiet -p heapster -- --source=replay:$(SCENARIO) -w $(WORKERS)

## Regenerate fixtures/small and fixtures/events from their generator (the test bed's synth), and
## the golden output.
fixtures:
	$(CARGO) run --quiet -p heapster-testbed -- synth --small --out fixtures/small
	$(CARGO) run --quiet -p heapster-testbed -- synth --events-scenario --out fixtures/events
	$(MAKE) golden

golden:
	$(CARGO) run --quiet -p heapster -- --source=replay:fixtures/small --sink=file:fixtures/small/expected/metrics.lp

## Serve a scenario as a kube-apiserver and kubelets on loopback: make fixture-server SCENARIO=dir
fixture-server:
	$(CARGO) run --quiet -p heapster-testbed -- fixture-server --scenario $(SCENARIO) --listen 127.0.0.1:6443

clean:
	$(CARGO) clean
