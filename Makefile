# qtune — build, test, demo.
#
#   make test   gofmt check, go vet, unit + integration tests (real QEMU and
#               libvirtd; QTUNE_LAB=require makes a missing one fail the run),
#               brief fuzzing of the parsers, the example policies
#               with their tests, and the example Prometheus rules with
#               theirs (promtool, from Debian's prometheus package).
#   make build  the qtune binary into ./bin
#   make test-flavour-10  the integration test packages again on QEMU 10.0
#               and libvirt 11.3 (make lab-flavour-10 builds their root
#               from bookworm-backports, once, under the lab cache)
#   make bench  quick benchmarks (under five minutes) into bench/RESULTS.md;
#               make bench-full for every size and longer phases

GO      ?= go
BIN     := bin/qtune
FUZZTIME ?= 12s

.PHONY: all build bench bench-full test fmt-check vet unit fuzz policies prometheus-rules clean stats-demo demo install lab-deps lab-flavour-10 test-flavour-10

all: build

build:
	$(GO) build -o $(BIN) ./cmd/qtune

# Benchmarks measure the built binary against baselines run beside it.
bench: build lab-deps
	$(GO) build -o bin/qtune-bench ./bench
	./bin/qtune-bench -qtune ./$(BIN) $(BENCHFLAGS)

bench-full:
	$(MAKE) bench BENCHFLAGS=-full

# The go test summary comes last, so it is what a reader sees at the end.
# Packages are tested one at a time (-p 1): several packages booting TCG
# guests at once on a small host starve each other's guests, and tests
# that read a guest's I/O rate then see the host, not qtune.
test: fmt-check vet policies prometheus-rules fuzz unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	QTUNE_LAB=require $(GO) test -race -count=1 -p 1 -timeout 20m ./...

# Runs every Fuzz target of every package for $(FUZZTIME).
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		pkg=./$$(dirname $$f); \
		for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/^func //'); do \
			echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run=NONE -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg >/dev/null || \
				{ $(GO) test -run=NONE -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) $$pkg; exit 1; }; \
		done; \
	done

# The shipped example policies must load clean and pass their tests.
policies: build
	./$(BIN) policy check examples/policy.d
	./$(BIN) policy test examples/tests/*.test.hcl

# The example alerting and recording rules must load and pass their tests.
prometheus-rules:
	promtool check rules examples/prometheus/*.yml
	promtool test rules examples/prometheus/tests/*.test.yml

clean:
	rm -rf bin

# A throwaway VM with a guest doing I/O in phases, watched by qtune stats.
stats-demo: build lab-deps
	$(GO) build -o bin/qtune-lab ./cmd/qtune-lab
	./bin/qtune-lab run --phases randwrite:400:4s,randrw:800:4s -- ./$(BIN) stats --qmp '{qmp}' --count 10

# Installs the binary, the systemd unit, the default config and the
# example policies (DESTDIR=... for a staging root).
install:
	systemd/install.sh

# The README's main command: two lab VMs (a writer that turns loud and
# calm, a steady reader) and the agent with the noisy-neighbour example
# policy, watched live; everything is stopped at the end.
demo: build lab-deps
	$(GO) build -o bin/qtune-lab ./cmd/qtune-lab
	./bin/qtune-lab demo --qtune ./$(BIN)

# QEMU for the lab, from Debian's packages, when it is not there yet.
lab-deps:
	@if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends qemu-system-x86 qemu-utils; \
	fi

# The lab cache, as internal/lab.CacheDir finds it; the flavour's root and
# its wrappers live under it.
LAB_CACHE := $(or $(QTUNE_LAB_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/qtune-lab)

# QEMU 10.0 and libvirt 11.3 from bookworm-backports in a root of their
# own, beside the system's (see docs/development.md). Kept between runs.
lab-flavour-10:
	@sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	if ! command -v mmdebstrap >/dev/null; then \
		$$sudo apt-get install -y -q --no-install-recommends mmdebstrap; \
	fi; \
	$$sudo env QTUNE_LAB_CACHE=$(LAB_CACHE) .ci/flavour-10.sh

# The packages with real-QEMU or real-libvirt tests, run on the flavour.
FLAVOUR_PKGS ?= ./internal/lab ./internal/hoststat ./qmp ./virt ./tuning ./doctor ./agent ./fleet ./cmd/qtune

test-flavour-10: lab-flavour-10
	@QTUNE_LAB_CACHE=$(LAB_CACHE) QTUNE_LAB_FLAVOUR=10 QTUNE_LAB=require \
		$(GO) test -count=1 -v -run '^TestVersions$$' ./internal/lab
	PATH=$(LAB_CACHE)/flavour-10/bin:$$PATH QTUNE_LAB_CACHE=$(LAB_CACHE) QTUNE_LAB_FLAVOUR=10 QTUNE_LAB=require \
		$(GO) test -count=1 -p 1 -timeout 30m $(FLAVOUR_PKGS)
