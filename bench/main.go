// Command bench measures qtune on this machine and writes the figures,
// each beside the baseline measured in the same run, into
// bench/RESULTS.md. Each benchmark owns one section of that file,
// delimited by "<!-- bench:NAME -->" markers, so benchmarks add or
// regenerate their section without touching the others'.
//
//	go run ./bench            quick mode (under five minutes)
//	go run ./bench -full      every size, longer phases
//	go run ./bench -only sampling-qmp -full -disks 400 -qtune OLD -results /tmp/old.md
//	                          one size, e.g. to compare two builds
//	go run ./bench hold N DIR start N disks' VMs and keep them, for pprof
//
// The benchmarks re-execute this program for their own clients:
// naive-poll (sampling-qmp's baseline) and floor-poll (sampling-libvirt's
// floor: bulk or per-disk reads of libvirt's counters, nothing else).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchmark is one section of RESULTS.md.
type benchmark struct {
	name string // section marker
	run  func(ctx context.Context, o options) (string, error)
}

type options struct {
	full  bool
	qtune string // the qtune binary under test
	self  string // this program, re-executed for baselines
	// resultsDir is where the results file is, and the plots beside it.
	resultsDir string
	// disks, when set, are the only sizes the sampling benchmarks run.
	disks []int
}

// sampleSizes are the sizes a sampling benchmark runs: o.disks, or its
// own choice for the mode.
func (o options) sampleSizes(quick, full []int) []int {
	switch {
	case len(o.disks) > 0:
		return o.disks
	case o.full:
		return full
	}
	return quick
}

var benchmarks = []benchmark{
	{name: "sampling-qmp", run: samplingQMP},
	{name: "sampling-libvirt", run: samplingLibvirt},
	{name: "sampling-cadence", run: samplingCadence},
	{name: "reaction", run: reaction},
	{name: "neighbour", run: neighbour},
	{name: "l2-cache", run: l2cache},
	{name: "cache-mode", run: cacheMode},
	{name: "crypt-compress", run: cryptCompress},
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "naive-poll" {
		os.Exit(naivePoll(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "floor-poll" {
		os.Exit(floorPoll(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "hold" {
		os.Exit(holdVMs(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "hold-libvirt" {
		os.Exit(holdLibvirt(os.Args[2:]))
	}
	full := flag.Bool("full", false, "every size and longer phases")
	qtune := flag.String("qtune", "bin/qtune", "qtune binary to measure")
	results := flag.String("results", "bench/RESULTS.md", "results file to update")
	only := flag.String("only", "", "run only these benchmark sections (comma-separated)")
	disks := flag.String("disks", "", "sampling benchmarks: only these sizes (comma-separated multiples of 20), e.g. to compare two builds at 400")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	o := options{full: *full, qtune: *qtune, self: self, resultsDir: filepath.Dir(*results)}
	if o.disks, err = parseSizes(*disks); err != nil {
		fatal(err)
	}
	sections := map[string]string{}
	if *only == "" {
		// A partial run leaves the machine section to the full run it
		// describes; each section says itself when it was measured.
		sections["machine"] = machineSection(ctx, *full)
	}
	for _, b := range benchmarks {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), b.name) {
			continue
		}
		start := time.Now()
		fmt.Fprintf(os.Stderr, "bench %s...\n", b.name)
		stamp := runStamp(ctx, *full)
		text, err := b.run(ctx, o)
		if err != nil {
			fatal(fmt.Errorf("%s: %w", b.name, err))
		}
		fmt.Fprintf(os.Stderr, "bench %s done in %s\n%s\n", b.name, time.Since(start).Round(time.Second), text)
		sections[b.name] = strings.TrimRight(text, "\n") + "\n\n" + stamp + "\n"
	}
	if err := updateResults(*results, sections); err != nil {
		fatal(err)
	}
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < disksPerVM || n%disksPerVM != 0 {
			return nil, fmt.Errorf("-disks %q: each size must be a multiple of %d", s, disksPerVM)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
