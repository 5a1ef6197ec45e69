package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/qtune/qtune/internal/lab"
)

// Sampling overhead under libvirt: domains of 20 qcow2 disks, paused
// right after they start (no guest work; a paused domain must be sampled
// like a running one), under a lab libvirtd. Baseline: a shell loop
// running `virsh domstats --block --list-active` every second. The loop
// and then the agent run on the same domains, each with the same
// libvirtd, whose CPU is counted with theirs: the cost of sampling is
// what the sampler spends plus what it makes libvirtd spend. After them
// the floor clients (floor.go) run the same way: what reading the
// counters alone costs through libvirt's API.

type libvirtFigures struct {
	disks                 int
	phase                 time.Duration
	agentCPU, agentDaemon float64 // CPU-s per minute
	virshCPU, virshDaemon float64
	agentRSS              float64
	agent                 agentMetrics
	reconnects            float64
	// Samples per minute each took: the loop sleeps 1 s after each virsh
	// run, so when a run takes long it samples less often than the agent.
	virshSamples, agentSamples float64
	// bulk reads the counters with the agent's call alone, perDisk with
	// one call per disk.
	bulk, perDisk floorFigures
}

func (f libvirtFigures) loop() float64 { return f.virshCPU + f.virshDaemon }

// floorRatio is a floor client's CPU (with libvirtd) to the loop's.
func (f libvirtFigures) floorRatio(c floorFigures) float64 { return ratio(c.total(), f.loop()) }

// floorPerSample is floorRatio per sample taken.
func (f libvirtFigures) floorPerSample(c floorFigures) float64 {
	if c.samples <= 0 || f.virshSamples <= 0 {
		return 0
	}
	return ratio(c.total()/c.samples, f.loop()/f.virshSamples)
}

// perSample is the ratio of the CPU each sampler (with libvirtd) spends
// per sample taken.
func (f libvirtFigures) perSample() float64 {
	if f.agentSamples <= 0 || f.virshSamples <= 0 {
		return 0
	}
	return ratio((f.agentCPU+f.agentDaemon)/f.agentSamples, (f.virshCPU+f.virshDaemon)/f.virshSamples)
}

func (f libvirtFigures) ratio() float64 {
	return ratio(f.agentCPU+f.agentDaemon, f.virshCPU+f.virshDaemon)
}

func samplingLibvirt(ctx context.Context, o options) (string, error) {
	// quick: a glimpse, under five minutes in all
	sizes, phase := o.sampleSizes([]int{100}, []int{100, 200, 400}), 10*time.Second
	if o.full {
		phase = 60 * time.Second
	}
	d, err := lab.StartLibvirtd(ctx)
	if err != nil {
		return "", err
	}
	defer d.Stop()
	dir, err := os.MkdirTemp("", "qtune-bench-lv-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	var rows []libvirtFigures
	domains := 0
	for _, n := range sizes {
		for ; domains < n/disksPerVM; domains++ {
			if err := pausedDomain(ctx, d, dir, domains); err != nil {
				return "", fmt.Errorf("domain %d: %w", domains, err)
			}
		}
		f, err := measureLibvirt(ctx, o, d, dir, n, phase)
		if err != nil {
			return "", fmt.Errorf("%d disks: %w", n, err)
		}
		rows = append(rows, f)
	}
	if !o.full {
		return libvirtTable(rows) + "\nlibvirtd restarted under load: full mode only.\n", nil
	}
	restart, err := restartUnderLoad(ctx, o, d, dir, sizes[len(sizes)-1])
	if err != nil {
		return "", fmt.Errorf("libvirtd restart: %w", err)
	}
	return libvirtTable(rows) + "\n" + restart, nil
}

// restartUnderLoad restarts libvirtd while the agent samples every disk,
// and reports how long the agent took to reconnect and to sample every
// disk again.
func restartUnderLoad(ctx context.Context, o options, d *lab.Libvirtd, dir string, disks int) (string, error) {
	addr, err := freeLoopback()
	if err != nil {
		return "", err
	}
	run := mkdir(dir, "agent-restart")
	agent := exec.CommandContext(ctx, o.qtune, "agent", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"), "--interval", "1s",
		"--policy", mkdir(run, "policy"), "--state-dir", mkdir(run, "state"), "--listen", addr,
		"--control-socket", filepath.Join(run, "control.sock"), "--log-level", "warn")
	var stderr bytes.Buffer
	agent.Stderr = &stderr
	if err := agent.Start(); err != nil {
		return "", err
	}
	defer func() {
		agent.Process.Signal(os.Interrupt)
		agent.Wait()
	}()
	seen := func() bool { return scrapeAgent(addr).disks == disks }
	if !waitUntil(ctx, 60*time.Second, seen) {
		return "", fmt.Errorf("the agent never saw all %d disks (stderr: %s)", disks, tail(stderr.String()))
	}
	start := time.Now()
	if err := d.Restart(ctx); err != nil {
		return "", err
	}
	restarted := time.Since(start)
	cycles := scrapeValue(addr, "qtune_cycle_duration_seconds_count")
	if !waitUntil(ctx, 2*time.Minute, func() bool { return scrapeValue(addr, "qtune_backend_reconnects_total") >= 1 }) {
		return "", fmt.Errorf("no reconnect within 2 minutes (stderr: %s)", tail(stderr.String()))
	}
	reconnected := time.Since(start)
	back := func() bool { return seen() && scrapeValue(addr, "qtune_cycle_duration_seconds_count") > cycles+1 }
	if !waitUntil(ctx, 2*time.Minute, back) {
		return "", fmt.Errorf("not every disk sampled again within 2 minutes (stderr: %s)", tail(stderr.String()))
	}
	return fmt.Sprintf("libvirtd restarted under %d disks (the agent sampling every 1 s): the daemon was back after %.1f s, the agent reconnected %.1f s after the restart began and sampled all %d disks again after %.1f s; reconnects counted: %g.\n",
		disks, restarted.Seconds(), reconnected.Seconds(), disks, time.Since(start).Seconds(), scrapeValue(addr, "qtune_backend_reconnects_total")), nil
}

func waitUntil(ctx context.Context, limit time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if ok() {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// pausedDomain defines and starts domain i with disksPerVM disks and
// pauses it at once.
func pausedDomain(ctx context.Context, d *lab.Libvirtd, dir string, i int) error {
	name := fmt.Sprintf("bench%d", i)
	var disks []lab.DomainDisk
	for k := 0; k < disksPerVM; k++ {
		img := filepath.Join(dir, fmt.Sprintf("%s-disk%d.qcow2", name, k))
		if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
			return err
		}
		disks = append(disks, lab.DomainDisk{Target: diskTarget(k), Image: img})
	}
	if _, err := d.DefineDomain(ctx, lab.DomainSpec{Name: name, MemoryMB: 128, Disks: disks}); err != nil {
		return err
	}
	_, err := d.Virsh(ctx, "suspend", name)
	return err
}

// diskTarget is vda, vdb, ... for k < 26.
func diskTarget(k int) string { return "vd" + string(rune('a'+k)) }

func measureLibvirt(ctx context.Context, o options, d *lab.Libvirtd, dir string, disks int, phase time.Duration) (libvirtFigures, error) {
	f := libvirtFigures{disks: disks, phase: phase}
	daemon := []int{d.PID()}
	runs := filepath.Join(dir, fmt.Sprintf("virsh-runs-%d", disks))
	loop := exec.CommandContext(ctx, "sh", "-c",
		`while :; do virsh -q -c "$1" domstats --block --list-active >/dev/null || exit 1; echo >>"$2"; sleep 1; done`, "virsh-loop", d.URI(), runs)
	var err error
	var before float64
	mark := func() { before = countLines(runs) }
	count := func() { f.virshSamples = (countLines(runs) - before) * time.Minute.Seconds() / phase.Seconds() }
	if f.virshCPU, f.virshDaemon, _, err = measurePhaseMarked(ctx, loop, daemon, phase, mark, count, cpuWithChildren); err != nil {
		return f, fmt.Errorf("virsh loop: %w", err)
	}
	addr, err := freeLoopback()
	if err != nil {
		return f, err
	}
	run := mkdir(dir, fmt.Sprintf("agent-%d", disks))
	agent := exec.CommandContext(ctx, o.qtune, "agent", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"), "--interval", "1s",
		"--policy", mkdir(run, "policy"), "--state-dir", mkdir(run, "state"), "--listen", addr,
		"--control-socket", filepath.Join(run, "control.sock"), "--log-level", "warn",
		"--disk-checks=false") // as in sampling-qmp: this measures sampling
	var cycles0 float64
	markAgent := func() { cycles0 = scrapeValue(addr, "qtune_cycle_duration_seconds_count") }
	scrape := func() {
		f.agent = scrapeAgent(addr)
		f.reconnects = scrapeValue(addr, "qtune_backend_reconnects_total")
		f.agentSamples = (scrapeValue(addr, "qtune_cycle_duration_seconds_count") - cycles0) * time.Minute.Seconds() / phase.Seconds()
	}
	if f.agentCPU, f.agentDaemon, f.agentRSS, err = measurePhaseMarked(ctx, agent, daemon, phase, markAgent, scrape, cpuSeconds); err != nil {
		return f, fmt.Errorf("agent: %w", err)
	}
	if f.bulk, err = measureFloor(ctx, o, d, dir, disks, phase, floorBulk); err != nil {
		return f, err
	}
	f.perDisk, err = measureFloor(ctx, o, d, dir, disks, phase, floorPerDisk)
	return f, err
}

func countLines(path string) float64 {
	b, _ := os.ReadFile(path)
	return float64(bytes.Count(b, []byte("\n")))
}

// cpuWithChildren is a process's CPU plus that of its children it has
// waited for (a shell loop's virsh runs).
func cpuWithChildren(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return 0, fmt.Errorf("cpu of %d: short stat line", pid)
	}
	total := 0.0
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		total += v
	}
	return total / clockTick, nil
}
