package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// Sampling at a cadence under libvirt: 20 domains of 20 disks, of which
// two run a guest writing (4 KiB random writes, cache='none'), one runs
// an idle guest, one waits paused to turn loud, and the rest are paused.
// In one run, on the same domains and libvirtd: the virsh loop, the agent
// (interval 1 s, idle_interval 10 s), the bulk floor client; then the
// agent with a rule pending on every disk (every domain watched, so all
// are read every second, as when all are busy); then the paused domain is
// resumed after a minute of quiet, and the time from its QEMU's first
// writes to its first sample covering one second is measured.

const (
	cadenceDomains = 20
	cadenceBusy    = 2
	cadenceIdle    = 3 // below: running an idle guest
	cadenceTurns   = 3 // paused until the reaction phase
)

func samplingCadence(ctx context.Context, o options) (string, error) {
	phase := 20 * time.Second
	if o.full {
		phase = 60 * time.Second
	}
	d, err := lab.StartLibvirtd(ctx)
	if err != nil {
		return "", err
	}
	defer d.Stop()
	dir, err := os.MkdirTemp("", "qtune-bench-cad-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	for i := 0; i < cadenceDomains; i++ {
		if err := cadenceDomain(ctx, d, dir, i); err != nil {
			return "", fmt.Errorf("domain %d: %w", i, err)
		}
	}
	pidDir := filepath.Join(d.Dir, "run", "libvirt", "qemu")
	pid := func(i int) int {
		b, _ := os.ReadFile(filepath.Join(pidDir, fmt.Sprintf("bench%d.pid", i)))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	// Let the guests boot and their load start.
	time.Sleep(20 * time.Second)
	load0, _ := os.ReadFile("/proc/loadavg")
	io := measureIO(pid, phase/2)
	f, err := measureLibvirtLoop(ctx, d, dir, cadenceDomains*disksPerVM, phase)
	if err != nil {
		return "", err
	}
	agent := func(name, policy string, scrape func(addr string)) (float64, float64, error) {
		run := mkdir(dir, name)
		pol := mkdir(run, "policy")
		if policy != "" {
			if err := os.WriteFile(filepath.Join(pol, "watch.hcl"), []byte(policy), 0o644); err != nil {
				return 0, 0, err
			}
		}
		addr, err := freeLoopback()
		if err != nil {
			return 0, 0, err
		}
		cmd := exec.CommandContext(ctx, o.qtune, "agent", "--libvirt-socket", d.SocketPath(),
			"--libvirt-pid-dir", pidDir, "--interval", "1s", "--idle-interval", "10s",
			"--policy", pol, "--state-dir", mkdir(run, "state"), "--listen", addr,
			"--control-socket", filepath.Join(run, "control.sock"), "--log-level", "warn", "--dry-run", "--disk-checks=false")
		self, daemon, _, err := measurePhaseMarked(ctx, cmd, []int{d.PID()}, phase, nil, func() { scrape(addr) }, cpuSeconds)
		return self, daemon, err
	}
	var quiet agentCadences
	cpu2, daemon2, err := agent("agent-2busy", "", func(addr string) { quiet = scrapeCadences(addr) })
	if err != nil {
		return "", fmt.Errorf("agent, 2 busy: %w", err)
	}
	bulk, err := measureFloor(ctx, o, d, dir, cadenceDomains*disksPerVM, phase, floorBulk)
	if err != nil {
		return "", err
	}
	const watchAll = `
rule "watch" {
  when = disk.write_iops >= 0
  for  = "24h"
  throttle { write_iops = 100000 }
}`
	var all agentCadences
	cpuAll, daemonAll, err := agent("agent-all", watchAll, func(addr string) { all = scrapeCadences(addr) })
	if err != nil {
		return "", fmt.Errorf("agent, all watched: %w", err)
	}
	// A failed reaction is reported with the figures above, not instead
	// of them.
	react, err := cadenceReaction(ctx, o, d, dir, pidDir, pid(cadenceTurns))
	if err != nil {
		react = "Reaction: not measured: " + err.Error() + "."
	}
	load1, _ := os.ReadFile("/proc/loadavg")

	loop := f.virshCPU + f.virshDaemon
	var b strings.Builder
	fmt.Fprintf(&b, "%d domains × %d disks (%d writing 4 KiB randwrite, cache='none'; %d running an idle guest; the rest paused), interval 1 s, idle_interval 10 s, %s phases; load average %s before, %s after (2 cores, shared).\n\n",
		cadenceDomains, disksPerVM, cadenceBusy, cadenceIdle-cadenceBusy, phase, loadavg(load0), loadavg(load1))
	b.WriteString("| sampler | CPU-s/min itself | libvirtd | total | vs virsh loop | vs bulk floor | VMs by cadence |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	row := func(name string, self, daemon float64, cads string) {
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f× | %.2f× | %s |\n", name, self, daemon, self+daemon, ratio(self+daemon, loop), ratio(self+daemon, bulk.total()), cads)
	}
	row("virsh domstats loop", f.virshCPU, f.virshDaemon, "every VM every ~1 s")
	row("bulk floor client (ConnectGetAllDomainStats 1/s)", bulk.cpu, bulk.daemon, "every VM every 1 s")
	row("qtune, 2 busy", cpu2, daemon2, quiet.String())
	row("qtune, all watched (a rule pending on every disk)", cpuAll, daemonAll, all.String())
	fmt.Fprintf(&b, "\nTargets: 2 busy ≤ 0.25× the loop: %.2f×; all read every second ≤ 1.05× the bulk floor: %.2f×.\n",
		ratio(cpu2+daemon2, loop), ratio(cpuAll+daemonAll, bulk.total()))
	fmt.Fprintf(&b, "\n/proc/<pid>/io of the QEMU processes over %s (per second): %s.\n", phase/2, io)
	b.WriteString("\n" + react + "\n")
	return b.String(), nil
}

func loadavg(b []byte) string {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// cadenceDomain starts bench<i>: busy ones write, idle ones run an idle
// guest, the turning one and the rest are paused.
func cadenceDomain(ctx context.Context, d *lab.Libvirtd, dir string, i int) error {
	name := fmt.Sprintf("bench%d", i)
	var disks []lab.DomainDisk
	for k := 0; k < disksPerVM; k++ {
		img := filepath.Join(dir, fmt.Sprintf("%s-disk%d.qcow2", name, k))
		if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
			return err
		}
		disks = append(disks, lab.DomainDisk{Target: diskTarget(k), Image: img})
	}
	spec := lab.DomainSpec{Name: name, MemoryMB: 128, Disks: disks}
	write := loadgen.Params{Disk: "/dev/vda", BlockSize: 4096, QueueDepth: 1, Span: 16 << 20, Seed: int64(i) + 1,
		Phases: []loadgen.Phase{{Pattern: loadgen.RandWrite, Rate: 300, Duration: time.Hour}}}
	switch {
	case i < cadenceBusy:
		spec.Workload = &write
	case i < cadenceIdle:
		idle := write
		idle.Phases = []loadgen.Phase{{Pattern: loadgen.Idle, Duration: time.Hour}}
		spec.Workload = &idle
	case i == cadenceTurns:
		spec.Workload, spec.Paused = &write, true
	default:
		spec.Paused = true
	}
	_, err := d.DefineDomain(ctx, spec)
	return err
}

// measureIO samples every domain's QEMU /proc/<pid>/io over a while and
// sums it up by kind of domain.
func measureIO(pid func(int) int, over time.Duration) string {
	read := func() map[int]map[string]float64 {
		out := map[int]map[string]float64{}
		for i := 0; i < cadenceDomains; i++ {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid(i)))
			if err != nil {
				continue
			}
			m := map[string]float64{}
			for _, l := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(l, ":"); ok {
					m[k], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
				}
			}
			out[i] = m
		}
		return out
	}
	a := read()
	time.Sleep(over)
	z := read()
	kind := func(i int) string {
		switch {
		case i < cadenceBusy:
			return "writing"
		case i < cadenceIdle:
			return "idle guest"
		}
		return "paused"
	}
	worst := map[string][2]float64{} // kind: max storage, max chars
	for i, m := range z {
		s := (m["read_bytes"] - a[i]["read_bytes"] + m["write_bytes"] - a[i]["write_bytes"]) / over.Seconds()
		c := (m["rchar"] - a[i]["rchar"] + m["wchar"] - a[i]["wchar"]) / over.Seconds()
		w := worst[kind(i)]
		worst[kind(i)] = [2]float64{max(w[0], s), max(w[1], c)}
	}
	var parts []string
	for _, k := range []string{"writing", "idle guest", "paused"} {
		w := worst[k]
		parts = append(parts, fmt.Sprintf("%s: up to %.0f KiB/s read_bytes+write_bytes, %.0f KiB/s rchar+wchar", k, w[0]/1024, w[1]/1024))
	}
	return strings.Join(parts, "; ") + " (nothing sampling them)"
}

// agentCadences counts VMs by their cadence reason in qtune status.
type agentCadences map[string]int

func (c agentCadences) String() string {
	var parts []string
	for _, r := range []string{"busy", "quiet", "no signal", "first sample"} {
		if c[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[r], r))
		}
	}
	if n := c["watched"]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d watched", n))
	}
	return strings.Join(parts, ", ")
}

func agentStatus(addr string) (api.Status, error) {
	var st api.Status
	resp, err := http.Get("http://" + addr + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func scrapeCadences(addr string) agentCadences {
	c := agentCadences{}
	st, err := agentStatus(addr)
	if err != nil {
		return c
	}
	for _, v := range st.VMs {
		r := v.CadenceReason
		if strings.HasPrefix(r, "watched") {
			r = "watched"
		}
		c[r]++
	}
	return c
}

// cadenceReaction runs the agent for a minute with the turning domain
// paused (quiet), resumes it, notes when its QEMU first writes, and
// waits for the first sample of it covering at most 1.5 s.
func cadenceReaction(ctx context.Context, o options, d *lab.Libvirtd, dir, pidDir string, qemu int) (string, error) {
	run := mkdir(dir, "agent-react")
	addr, err := freeLoopback()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, o.qtune, "agent", "--libvirt-socket", d.SocketPath(),
		"--libvirt-pid-dir", pidDir, "--interval", "1s", "--idle-interval", "10s",
		"--policy", mkdir(run, "policy"), "--state-dir", mkdir(run, "state"), "--listen", addr,
		"--control-socket", filepath.Join(run, "control.sock"), "--log-level", "warn", "--dry-run", "--disk-checks=false")
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	name := fmt.Sprintf("bench%d", cadenceTurns)
	time.Sleep(time.Minute)
	st, err := agentStatus(addr)
	if err != nil {
		return "", err
	}
	before := ""
	for _, v := range st.VMs {
		if v.Name == name {
			before = v.Cadence + " (" + v.CadenceReason + ")"
		}
	}
	if _, err := d.Virsh(ctx, "resume", name); err != nil {
		return "", err
	}
	writes := func() float64 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", qemu))
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return n
			}
		}
		return -1
	}
	// The change: the start of the first half second in which its QEMU
	// wrote 128 KiB or more (the guest boots first; its load writes
	// ~600 KiB a half second), polled every 50 ms.
	var change time.Time
	type at struct {
		t time.Time
		w float64
	}
	var win []at
	for end := time.Now().Add(3 * time.Minute); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		win = append(win, at{time.Now(), writes()})
		for len(win) > 1 && win[len(win)-1].t.Sub(win[0].t) > 500*time.Millisecond {
			win = win[1:]
		}
		if n := len(win); n > 1 && win[n-1].w-win[0].w >= 128<<10 {
			// The first poll of the window that saw the writes begin.
			for i := 1; i < n; i++ {
				if win[i].w > win[i-1].w {
					change = win[i-1].t
					break
				}
			}
			break
		}
	}
	if change.IsZero() {
		return "", fmt.Errorf("%s never wrote after resume", name)
	}
	for end := change.Add(60 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var hist []api.Cycle
		resp, err := http.Get("http://" + addr + "/v1/history")
		if err != nil {
			continue
		}
		json.NewDecoder(resp.Body).Decode(&hist)
		resp.Body.Close()
		for _, c := range hist {
			for _, p := range c.Points {
				if p.Disk.VM == name && p.Disk.Name == "vda" && p.Disk.Time.After(change) && p.Rates.Interval <= 1500*time.Millisecond {
					return fmt.Sprintf("Reaction: %s quiet for a minute (cadence %s), resumed; its QEMU first wrote at t0; its first sample covering ≤ 1.5 s (%.2f s, %.0f write IOPS) was taken %.2f s after t0 (target ≤ 2 s).",
						name, before, p.Rates.Interval.Seconds(), p.Rates.WriteIOPS, p.Disk.Time.Sub(change).Seconds()), nil
				}
			}
		}
	}
	st, _ = agentStatus(addr)
	now := ""
	for _, v := range st.VMs {
		if v.Name == name {
			now = v.Cadence + " (" + v.CadenceReason + ")"
		}
	}
	return "", fmt.Errorf("no 1 s sample of %s within 60 s of its first writes (cadence before %s, now %s)", name, before, now)
}

// measureLibvirtLoop measures the virsh loop alone.
func measureLibvirtLoop(ctx context.Context, d *lab.Libvirtd, dir string, disks int, phase time.Duration) (libvirtFigures, error) {
	f := libvirtFigures{disks: disks, phase: phase}
	runs := filepath.Join(dir, fmt.Sprintf("virsh-runs-cad-%d", disks))
	loop := exec.CommandContext(ctx, "sh", "-c",
		`while :; do virsh -q -c "$1" domstats --block --list-active >/dev/null || exit 1; echo >>"$2"; sleep 1; done`, "virsh-loop", d.URI(), runs)
	var err error
	f.virshCPU, f.virshDaemon, _, err = measurePhaseMarked(ctx, loop, []int{d.PID()}, phase, nil, nil, cpuWithChildren)
	if err != nil {
		return f, fmt.Errorf("virsh loop: %w", err)
	}
	return f, nil
}
