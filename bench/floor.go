package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/virt"
)

// The floor of sampling through libvirt: a client that does nothing but
// read every active domain's disk counters once a second. What it and
// libvirtd spend is what any sampler at that rate pays through libvirt's
// API, whatever it does with the counters; the agent is measured against
// it in the same run.

// Floor clients, by how they read the counters.
const (
	// floorBulk makes the agent's call: virt's DomainStats, one
	// ConnectGetAllDomainStats(BLOCK|STATE) for every active domain.
	floorBulk = "bulk"
	// floorPerDisk makes one DomainBlockStatsFlags call per disk,
	// libvirt's only other API for per-disk counters.
	floorPerDisk = "per-disk"
)

// floorFigures is one floor client's phase: CPU-s per minute of the
// client and of libvirtd, and full reads of every disk per minute.
type floorFigures struct {
	cpu, daemon, samples float64
}

func (f floorFigures) total() float64 { return f.cpu + f.daemon }

// floorPoll is the floor client, run by the benchmark as its own process
// so that its CPU is its own. After each read of every disk it appends a
// line to COUNT_FILE; it stops at the first failed read.
func floorPoll(args []string) int {
	if len(args) != 3 || (args[0] != floorBulk && args[0] != floorPerDisk) {
		fmt.Fprintln(os.Stderr, "usage: bench floor-poll bulk|per-disk LIBVIRT_SOCKET COUNT_FILE")
		return 2
	}
	ctx := context.Background()
	v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{Socket: args[1]})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor-poll:", err)
		return 1
	}
	defer v.Close()
	count, err := os.OpenFile(args[2], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor-poll:", err)
		return 1
	}
	defer count.Close()
	read := func(ctx context.Context) error {
		_, err := v.DomainStats(ctx)
		return err
	}
	if args[0] == floorPerDisk {
		if read, err = perDiskReader(ctx, v); err != nil {
			fmt.Fprintln(os.Stderr, "floor-poll:", err)
			return 1
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range tick.C {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := read(cctx)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor-poll:", err)
			return 1
		}
		count.Write([]byte("\n"))
	}
	return 0
}

// perDiskReader learns the active domains and their disks once (as the
// agent reads its facts once, not every cycle) and returns a read of
// every disk's counters with one call per disk.
func perDiskReader(ctx context.Context, v *virt.Libvirt) (func(context.Context) error, error) {
	st, err := v.DomainStats(ctx)
	if err != nil {
		return nil, err
	}
	disks := map[string][]string{}
	var names []string
	for name, s := range st {
		names = append(names, name)
		for _, d := range s.Disks {
			disks[name] = append(disks[name], d.Name)
		}
	}
	sort.Strings(names)
	return func(ctx context.Context) error {
		for _, name := range names {
			if _, err := v.DiskStats(ctx, name, disks[name]); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// measureFloor runs one floor client for a phase, measured like the
// other samplers.
func measureFloor(ctx context.Context, o options, d *lab.Libvirtd, dir string, disks int, phase time.Duration, mode string) (floorFigures, error) {
	var f floorFigures
	runs := filepath.Join(dir, fmt.Sprintf("floor-%s-%d", mode, disks))
	client := exec.CommandContext(ctx, o.self, "floor-poll", mode, d.SocketPath(), runs)
	var before float64
	mark := func() { before = countLines(runs) }
	count := func() { f.samples = (countLines(runs) - before) * time.Minute.Seconds() / phase.Seconds() }
	var err error
	if f.cpu, f.daemon, _, err = measurePhaseMarked(ctx, client, []int{d.PID()}, phase, mark, count, cpuSeconds); err != nil {
		return f, fmt.Errorf("%s floor: %w", mode, err)
	}
	// Stopped by the benchmark, it dies of the interrupt; an exit code
	// means it stopped by itself, at a failed read.
	if st := client.ProcessState; st != nil && st.ExitCode() >= 0 {
		msg := ""
		if b, ok := client.Stderr.(*bytes.Buffer); ok {
			msg = tail(b.String())
		}
		return f, fmt.Errorf("%s floor: the client stopped during the phase (%s): %s", mode, st, msg)
	}
	if f.samples == 0 {
		return f, fmt.Errorf("%s floor: no read of every disk completed in %s", mode, phase)
	}
	return f, nil
}
