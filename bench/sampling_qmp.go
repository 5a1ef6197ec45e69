package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/qtune/qtune/internal/lab"
)

// Sampling overhead on plain QEMU: VMs of 20 qcow2 disks each, stopped
// (-S, no guest work), sampled every second by the qtune agent and, as
// the baseline, by a naive poller that asks each VM's QMP socket for
// query-block and query-blockstats every second. The two run one after
// the other on the same VMs: a QMP socket serves one client at a time.

const disksPerVM = 20

type qmpFigures struct {
	disks               int
	agentCPU, agentQEMU float64 // CPU-s per minute
	naiveCPU, naiveQEMU float64
	agentRSS, naiveRSS  float64 // MiB at the end of the phase
	agent               agentMetrics
	phase               time.Duration
}

func samplingQMP(ctx context.Context, o options) (string, error) {
	// quick: a glimpse, under five minutes in all
	sizes, phase := o.sampleSizes([]int{100}, []int{100, 200, 400}), 10*time.Second
	if o.full {
		phase = 60 * time.Second
	}
	var rows []qmpFigures
	for _, n := range sizes {
		f, err := measureQMP(ctx, o, n, phase)
		if err != nil {
			return "", fmt.Errorf("%d disks: %w", n, err)
		}
		rows = append(rows, f)
	}
	return qmpTable(rows), nil
}

func measureQMP(ctx context.Context, o options, disks int, phase time.Duration) (qmpFigures, error) {
	dir, err := os.MkdirTemp("", "qtune-bench-")
	if err != nil {
		return qmpFigures{}, err
	}
	defer os.RemoveAll(dir)
	vms, err := startVMs(ctx, dir, disks/disksPerVM)
	defer func() {
		for _, vm := range vms {
			vm.Stop()
		}
	}()
	if err != nil {
		return qmpFigures{}, err
	}
	var qemuPIDs []int
	for _, vm := range vms {
		qemuPIDs = append(qemuPIDs, vm.PID())
	}
	f := qmpFigures{disks: disks, phase: phase}
	sockDir := filepath.Join(dir, "sockets")
	naive := exec.CommandContext(ctx, o.self, "naive-poll", sockDir)
	if f.naiveCPU, f.naiveQEMU, f.naiveRSS, err = measurePhase(ctx, naive, qemuPIDs, phase, nil); err != nil {
		return f, fmt.Errorf("naive poll: %w", err)
	}
	addr, err := freeLoopback()
	if err != nil {
		return f, err
	}
	agent := exec.CommandContext(ctx, o.qtune, "agent", "--qmp-dir", sockDir, "--interval", "1s",
		"--policy", mkdir(dir, "policy"), "--state-dir", mkdir(dir, "state"), "--listen", addr,
		"--control-socket", filepath.Join(dir, "control.sock"), "--log-level", "warn",
		// The disk checks run qemu-img beside the agent at their own pace
		// (minutes); this measures sampling.
		"--disk-checks=false")
	scrape := func() { f.agent = scrapeAgent(addr) }
	if f.agentCPU, f.agentQEMU, f.agentRSS, err = measurePhase(ctx, agent, qemuPIDs, phase, scrape); err != nil {
		return f, fmt.Errorf("agent: %w", err)
	}
	return f, nil
}

// startVMs starts n stopped VMs of disksPerVM qcow2 disks and links their
// QMP sockets into dir/sockets as vmN.sock.
func startVMs(ctx context.Context, dir string, n int) ([]*lab.VM, error) {
	socks := mkdir(dir, "sockets")
	var vms []*lab.VM
	for i := 0; i < n; i++ {
		var disks []lab.Disk
		for d := 0; d < disksPerVM; d++ {
			img := filepath.Join(dir, fmt.Sprintf("vm%d-disk%d.qcow2", i, d))
			if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
				return vms, err
			}
			disks = append(disks, lab.Disk{ID: fmt.Sprintf("disk%d", d), Image: img})
		}
		vm, err := lab.StartVM(ctx, lab.VMConfig{Name: fmt.Sprintf("bench%d", i), Paused: true, MemoryMB: 64, Disks: disks})
		if err != nil {
			return vms, err
		}
		vms = append(vms, vm)
		if err := os.Symlink(vm.QMPPath(), filepath.Join(socks, fmt.Sprintf("vm%d.sock", i))); err != nil {
			return vms, err
		}
	}
	return vms, nil
}

// measurePhase runs cmd for a warm-up of 5 s and then phase, and returns
// its CPU-s per minute, the QEMUs' CPU-s per minute over the same phase,
// and its RSS at the end. atEnd runs just before cmd is stopped.
func measurePhase(ctx context.Context, cmd *exec.Cmd, qemus []int, phase time.Duration, atEnd func()) (self, qemu, rss float64, err error) {
	return measurePhaseWith(ctx, cmd, qemus, phase, atEnd, cpuSeconds)
}

// measurePhaseWith is measurePhase with cmd's CPU read by cpu.
func measurePhaseWith(ctx context.Context, cmd *exec.Cmd, qemus []int, phase time.Duration, atEnd func(), cpu func(int) (float64, error)) (self, qemu, rss float64, err error) {
	return measurePhaseMarked(ctx, cmd, qemus, phase, nil, atEnd, cpu)
}

// measurePhaseMarked is measurePhaseWith with atStart run when the
// measured phase begins.
func measurePhaseMarked(ctx context.Context, cmd *exec.Cmd, qemus []int, phase time.Duration, atStart, atEnd func(), cpu func(int) (float64, error)) (self, qemu, rss float64, err error) {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	time.Sleep(5 * time.Second)
	pid := cmd.Process.Pid
	if atStart != nil {
		atStart()
	}
	c0, err1 := cpu(pid)
	q0, err2 := sumCPU(qemus)
	select {
	case <-ctx.Done():
		return 0, 0, 0, ctx.Err()
	case <-time.After(phase):
	}
	c1, err3 := cpu(pid)
	q1, err4 := sumCPU(qemus)
	rss, err5 := rssMiB(pid)
	for _, e := range []error{err1, err2, err3, err4, err5} {
		if e != nil {
			return 0, 0, 0, fmt.Errorf("%w (stderr: %s)", e, tail(stderr.String()))
		}
	}
	if atEnd != nil {
		atEnd()
	}
	perMin := time.Minute.Seconds() / phase.Seconds()
	return (c1 - c0) * perMin, (q1 - q0) * perMin, rss, nil
}

func tail(s string) string {
	if len(s) > 400 {
		return s[len(s)-400:]
	}
	return s
}

func mkdir(dir, name string) string {
	p := filepath.Join(dir, name)
	os.MkdirAll(p, 0o755)
	return p
}

func freeLoopback() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func qmpTable(rows []qmpFigures) string {
	sort.Slice(rows, func(i, j int) bool { return rows[i].disks < rows[j].disks })
	var b bytes.Buffer
	b.WriteString("## Sampling overhead, plain QEMU\n\n")
	b.WriteString("VMs of 20 qcow2 disks, stopped (-S), sampled every 1 s. Baseline: a naive poller asking each VM for query-block and query-blockstats every second over a kept connection, run on the same VMs just before the agent. CPU in CPU-seconds per minute from /proc/<pid>/stat; cycle quantiles from the agent's qtune_cycle_duration_seconds histogram (bucket upper bounds).\n\n")
	b.WriteString("| disks | phase | agent CPU | naive poll CPU | ratio | QEMUs CPU (agent / naive) | agent RSS MiB | naive RSS MiB | cycle p50 / p99 | late cycles | disks seen |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %.2f | %.2f | %.2f× | %.2f / %.2f | %.1f | %.1f | %s / %s | %g | %d |\n",
			r.disks, r.phase, r.agentCPU, r.naiveCPU, ratio(r.agentCPU, r.naiveCPU), r.agentQEMU, r.naiveQEMU,
			r.agentRSS, r.naiveRSS, secs(r.agent.p50), secs(r.agent.p99), r.agent.late, r.agent.disks)
	}
	b.WriteString("\nTargets at 400 disks: agent ≤ 1 CPU-s per minute, RSS < 64 MiB.\n\n")
	b.WriteString(qmpReading(rows[len(rows)-1]))
	return b.String()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func secs(s float64) string {
	if s < 0 {
		return "n/a"
	}
	return fmt.Sprintf("≤%gs", s)
}

// qmpReading is the short reading of the largest size measured.
func qmpReading(r qmpFigures) string {
	verdict := func(ok bool) string {
		if ok {
			return "within"
		}
		return "over"
	}
	note := ""
	if r.disks < 400 {
		note = " (the targets are for 400 disks: run make bench-full)"
	}
	seen := "every disk was seen"
	if r.agent.disks != r.disks {
		seen = fmt.Sprintf("only %d of %d disks were seen", r.agent.disks, r.disks)
	}
	return fmt.Sprintf("Reading: at %d disks the agent used %.2f CPU-s per minute, %.2f× the naive poller, "+
		"and %.1f MiB RSS; %s. CPU is %s the 1 CPU-s/min target and RSS %s the 64 MiB target%s.\n",
		r.disks, r.agentCPU, ratio(r.agentCPU, r.naiveCPU), r.agentRSS, seen,
		verdict(r.agentCPU <= 1), verdict(r.agentRSS < 64), note)
}
