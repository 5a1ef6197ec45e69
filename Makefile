# qtune — build, test, demo.
#
#   make test   gofmt check, go vet, unit + integration tests (real QEMU and
#               libvirtd; QTUNE_LAB=require makes a missing one fail the run),
#               brief fuzzing of the parsers, the example policies
#               with their tests, the example Prometheus rules with
#               theirs (promtool, from Debian's prometheus package), and
#               the Debian package installed, upgraded and purged (as root).
#   make build  the qtune binary into ./bin
#   make deb    the Debian package dist/qtune_VERSION_amd64.deb (nfpm, from
#               the tools module; reproducible: the same commit gives the
#               same file)
#   make deb-check  builds the package and installs, upgrades, removes and
#               purges it on this machine (packaging/ci-check.sh; root)
#   make test-flavour-10  the integration test packages again on QEMU 10.0
#               and libvirt 11.3 (make lab-flavour-10 builds their root
#               from bookworm-backports, once, under the lab cache)
#   make bench  quick benchmarks (under five minutes) into bench/RESULTS.md;
#               make bench-full for every size and longer phases

GO      ?= go
BIN     := bin/qtune
# Each fuzz target's time in make test: as long as the package check
# beside it takes (FUZZTIME=10m make fuzz for a real search).
FUZZTIME ?= 3s

# The build's identity, stamped into the binary (qtune version) and the
# package: the version from git (packaging/version.sh), the commit, and
# its commit time as the build date and SOURCE_DATE_EPOCH, so that two
# builds of one commit are the same bytes (with -trimpath and no build
# id; -s -w: no symbol table or DWARF, as Debian ships binaries, while a
# panic still prints its stack). VERSION=1.2.3 make deb overrides it.
VERSION ?= $(shell packaging/version.sh 2>/dev/null || echo 0.0.0~unknown)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
BUILD_DATE := $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO := github.com/qtune/qtune/internal/buildinfo
LDFLAGS := -s -w -buildid= -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(BUILD_DATE)
DEB_MAINTAINER ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
DEB     := dist/qtune_$(VERSION)-1_amd64.deb
# nfpm builds from the tools module's go.sum: no downloaded binary.
NFPM    := $(GO) tool -modfile=tools/go.mod nfpm
export SOURCE_DATE_EPOCH

.PHONY: all build bench bench-full test fmt-check vet unit fuzz policies prometheus-rules clean stats-demo demo install lab-deps deb deb-check lab-flavour-10 test-flavour-10

all: build

# CGO off: one static binary, the same on every amd64 host, whatever its libc.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/qtune

deb: build
	VERSION='$(VERSION)' COMMIT='$(COMMIT)' DEB_MAINTAINER='$(DEB_MAINTAINER)' packaging/stage.sh $(BIN) build/deb/root /usr
	mkdir -p dist
	VERSION='$(VERSION)' DEB_MAINTAINER='$(DEB_MAINTAINER)' $(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DEB)
	@echo "built $(DEB)"

deb-check:
	packaging/ci-check.sh

# Benchmarks measure the built binary against baselines run beside it.
bench: build lab-deps
	$(GO) build -o bin/qtune-bench ./bench
	./bin/qtune-bench -qtune ./$(BIN) $(BENCHFLAGS)

bench-full:
	$(MAKE) bench BENCHFLAGS=-full

# The go test summary comes last, so it is what a reader sees at the end.
# Packages are tested one at a time (-p 1): several packages booting TCG
# guests at once on a small host starve each other's guests, and tests
# that read a guest's I/O rate then see the host, not qtune. Inside a
# package, real-QEMU tests that mostly wait (for a rule's timings, a
# restart, a migration, a copy) run beside each other (t.Parallel; four
# at a time where TestMain says so, see docs/development.md); those whose
# checks need a guest at full speed run alone, first.
# The package check (dpkg, lintian: mostly waiting on disk) runs beside
# the fuzzing (a fixed time whatever the load) and go vet, each one's
# output kept together.
test: fmt-check policies prometheus-rules
	$(MAKE) -j3 --output-sync=target vet deb-check fuzz
	$(MAKE) unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The race runtime sleeps a second at every test binary's exit by
# default (atexit_sleep_ms); a tenth of it is enough for a report to be
# printed, and saves half a minute over the packages run one at a time.
unit:
	QTUNE_LAB=require GORACE="$${GORACE:-atexit_sleep_ms=100}" $(GO) test -race -count=1 -p 1 -timeout 30m ./...

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
	rm -rf bin build dist

# A throwaway VM with a guest doing I/O in phases, watched by qtune stats.
stats-demo: build lab-deps
	$(GO) build -o bin/qtune-lab ./cmd/qtune-lab
	./bin/qtune-lab run --phases randwrite:400:4s,randrw:800:4s -- ./$(BIN) stats --qmp '{qmp}' --count 10

# Installs the package's files under /usr/local (packaging/stage.sh): the
# binary, the systemd unit, man pages, completion, the default config
# (never overwritten) and the examples under share/doc; the policy
# directory starts empty (DESTDIR=... for a staging root).
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

# The packages with real-QEMU or real-libvirt tests, run on the flavour
# (fleet's real tests need etcd only, the same on both).
FLAVOUR_PKGS ?= ./internal/lab ./qmp ./virt ./tuning ./jobs ./facts ./doctor ./agent ./cmd/qtune

test-flavour-10: lab-flavour-10
	@QTUNE_LAB_CACHE=$(LAB_CACHE) QTUNE_LAB_FLAVOUR=10 QTUNE_LAB=require \
		$(GO) test -count=1 -v -run '^TestVersions$$' ./internal/lab
	PATH=$(LAB_CACHE)/flavour-10/bin:$$PATH QTUNE_LAB_CACHE=$(LAB_CACHE) QTUNE_LAB_FLAVOUR=10 QTUNE_LAB=require \
		$(GO) test -count=1 -p 1 -timeout 30m $(FLAVOUR_PKGS)
