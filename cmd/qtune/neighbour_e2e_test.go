package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// neighbourLatencyMs is the victim read latency that counts as suffering
// in the neighbour test: well above what the victim sees beside a quiet
// neighbour here, well below what it sees beside a loud one (both logged).
const neighbourLatencyMs = 0.6

// The ratio term is unknown, so the rule cannot fire, until the agent has
// learnt the victim's normal read latency from its real samples during
// the culprit's quiet phase.
var neighbourPolicy = fmt.Sprintf(`
rule "protect-neighbours" {
  when         = disk.neighbour_read_latency_ms > %g && disk.device_write_share > 0.5 && disk.neighbour_read_latency_ratio > 0
  for          = "3s" # a lone slow second on a shared machine is not a neighbour
  release_when = disk.write_bps < 200000
  clear_after  = "3s"
  cooldown     = "1s"
  throttle { write_iops = 50 }
}
`, neighbourLatencyMs)

// TestNeighbourVictimTriggersCulpritThrottle runs two real guests whose
// images share one host filesystem: a victim reading steadily and a
// culprit that is idle, then writes as fast as it can. The victim's read
// latency, seen as its neighbour's, must throttle the culprit once it is
// loud, the decision must name that latency, and the victim is never
// acted on.
func TestNeighbourVictimTriggersCulpritThrottle(t *testing.T) {
	lab.NeedQEMU(t) // not in parallel: its guest's rates need the host to itself
	bin := buildQtune(t)
	ctx := context.Background()
	base := t.TempDir() // one filesystem for both images
	img := func(name string) string {
		p := filepath.Join(base, name+".qcow2")
		// Allocated data: reads of unallocated clusters never reach the device.
		if err := lab.CreateImage(ctx, p, "qcow2", 32<<20, lab.ImageOpts{Preallocation: "full"}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	culprit := loadgen.Defaults()
	// Large direct writes, several in flight: enough to load the device.
	culprit.Loops, culprit.Span, culprit.BlockSize, culprit.QueueDepth = 1, 30<<20, 1<<20, 8
	culprit.Phases = []loadgen.Phase{
		// Quiet: no writes at all. (Beside a culprit writing even 5 MiB/s
		// the victim's latency on this shared test machine already
		// crossed the threshold now and then: the gap between quiet and
		// loud is too thin here to test on latency alone.)
		{Pattern: loadgen.Idle, Duration: 25 * time.Second},
		{Pattern: loadgen.RandWrite, Rate: 0, Duration: 20 * time.Second},
		{Pattern: loadgen.Idle, Duration: time.Hour},
	}
	victim := loadgen.Defaults()
	victim.Loops, victim.Span = 0, 16<<20
	victim.Phases = []loadgen.Phase{{Pattern: loadgen.RandRead, Rate: 200, Duration: time.Hour}}
	dir := t.TempDir()
	var vms []*lab.VM
	for name, w := range map[string]*loadgen.Params{"culprit": &culprit, "victim": &victim} {
		vm := lab.StartVMT(t, lab.VMConfig{Name: name, Workload: w, Disks: []lab.Disk{{ID: "disk0", Image: img(name), CacheDirect: true}}})
		if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, name+".sock")); err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm)
	}
	// Both guests booted (two TCG boots at once are slow I/O in themselves).
	for _, vm := range vms {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := vm.WaitSerial(wctx, "qtune-load ready")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	a := startAgentWith(t, bin, neighbourPolicy, "--qmp-dir", dir)

	var applied *api.ActionStatus
	for end := time.Now().Add(75 * time.Second); applied == nil && time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		applied = action(a.status(t), "culprit", "applied")
	}
	h := a.history(t)
	var loudAt time.Time
	var quietLat, loudLat []string
	for _, c := range h {
		for _, p := range c.Points {
			switch {
			case p.Disk.VM == "culprit" && p.Rates.WriteIOPS > 40 && loudAt.IsZero():
				loudAt = c.At
			case p.Disk.VM == "victim" && p.Disk.HostDevice == "":
				t.Fatalf("the victim's host device is unknown: %+v", p.Disk)
			case p.Disk.VM == "victim" && loudAt.IsZero():
				quietLat = append(quietLat, fmt.Sprintf("%.2f", p.Rates.ReadLatencyMs))
			case p.Disk.VM == "victim":
				loudLat = append(loudLat, fmt.Sprintf("%.2f", p.Rates.ReadLatencyMs))
			}
		}
	}
	t.Logf("victim read latency (ms) beside a quiet culprit: %s", strings.Join(quietLat, " "))
	t.Logf("victim read latency (ms) beside a loud culprit: %s", strings.Join(loudLat, " "))
	if applied == nil {
		t.Fatalf("no throttle on the culprit (loud at %s)", loudAt)
	}
	t.Logf("culprit loud at %s, throttled at %s: %s", loudAt.Format("15:04:05.0"), applied.At.Format("15:04:05.0"), applied.Reason)
	if loudAt.IsZero() || applied.At.Before(loudAt) {
		t.Errorf("the culprit was throttled before it was loud (loud at %s, throttled at %s)", loudAt, applied.At)
	}
	if !strings.Contains(applied.Reason, "disk.neighbour_read_latency_ms=") || !strings.Contains(applied.Reason, "disk.neighbour_read_latency_ratio=") {
		t.Errorf("the throttle's reason does not name the neighbour's latency and its ratio to normal: %s", applied.Reason)
	}
	// The victim keeps reading for a while beside the throttled culprit.
	time.Sleep(5 * time.Second)
	for _, act := range a.status(t).Actions {
		if act.VM == "victim" {
			t.Errorf("the victim was acted on: %+v", act)
		}
	}
	for _, vm := range vms {
		if !strings.Contains(vm.Serial(), "qtune-load") {
			t.Errorf("%s: no progress from its guest", vm.Name)
		}
	}
}
