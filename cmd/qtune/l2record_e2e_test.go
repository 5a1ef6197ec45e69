package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

const l2Policy = `
rule "l2" {
  when = disk.write_iops > 100
  for  = "1s"
  l2_cache { size = "2MiB" }
}
`

// statusL2 is the L2 figure status shows for vm's disk (its only one)
// and whether it says the figure is qtune's record; ok is false while
// the disk is not in status.
func statusL2(st api.Status, vm string) (size uint64, recorded, ok bool) {
	for _, v := range st.VMs {
		for _, d := range v.Disks {
			if v.Name == vm {
				return d.L2CacheSize, slices.Contains(d.Recorded, string(policy.KnobL2Cache)), true
			}
		}
	}
	return 0, false, false
}

// waitRecordedL2 waits until the agent reports vm's L2 cache as its
// record of want (the cycle that sets it reports the size before).
func waitRecordedL2(t *testing.T, a *runningAgent, vm string, want uint64) {
	t.Helper()
	a.waitFor(t, 10*time.Second, "the record's L2 cache in status", func(s api.Status) bool {
		size, recorded, _ := statusL2(s, vm)
		return size == want && recorded
	})
}

// historyL2 checks that every point of vm's disk0 in the agent's history
// (what policies saw) has the L2 figure want, and returns how many.
func historyL2(t *testing.T, a *runningAgent, vm string, want uint64) int {
	t.Helper()
	n := 0
	for _, c := range a.history(t) {
		for _, p := range c.Points {
			if p.Disk.VM != vm {
				continue
			}
			n++
			if p.Disk.L2CacheSize != want || !slices.Contains(p.Disk.Recorded, string(policy.KnobL2Cache)) {
				t.Fatalf("cycle at %s saw an L2 cache of %d (recorded %v); want the record's %d", c.At.Format(time.TimeOnly), p.Disk.L2CacheSize, p.Disk.Recorded, want)
			}
		}
	}
	return n
}

// QEMU cannot report an L2 cache size, and an agent started again knows
// only the command line's. The agent sets 2 MiB, is killed with SIGKILL
// and started again: from the first sample on, what it reports for the
// disk (status, and the points its policies see) is its record's 2 MiB,
// also after its QMP connection is lost and made again, and nothing is
// set again for it.
func TestL2FigureIsTheRecordAfterRestartQMP(t *testing.T) {
	lab.NeedQEMU(t)
	t.Parallel()
	bin := buildQtune(t)
	vm := lab.WriterVMT(t, "loud", 0)
	dir := t.TempDir()
	if err := os.Symlink(vm.QMPPath(), filepath.Join(dir, "loud.sock")); err != nil {
		t.Fatal(err)
	}
	a := startAgentWith(t, bin, l2Policy, "--qmp-dir", dir)
	st := a.waitFor(t, 30*time.Second, "the L2 cache set and recorded", func(s api.Status) bool {
		return len(s.Owned) == 1 && s.Owned[0].Phase == state.PhaseApplied
	})
	const set = 2 << 20
	if o := st.Owned[0]; o.Applied.L2 == nil || o.Applied.L2.Size != set || o.Original.L2.Size == set {
		t.Fatalf("owned %+v; want 2 MiB set over another size", o)
	}
	original := st.Owned[0].Original.L2.Size
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.done <- <-a.done

	a = a.start(t, bin, "--qmp-dir", dir)
	st = a.waitFor(t, 20*time.Second, "the disk in status", func(s api.Status) bool { _, _, ok := statusL2(s, "loud"); return ok })
	if size, recorded, _ := statusL2(st, "loud"); size != set || !recorded {
		t.Fatalf("after the restart status shows %d (recorded %v); want the record's %d, not the command line's %d", size, recorded, set, original)
	}
	first := historyL2(t, a, "loud", set)

	// A lost connection: QEMU stopped past the call timeout, so the
	// agent drops the connection and dials again once QEMU runs.
	vm.Signal(syscall.SIGSTOP)
	a.waitFor(t, 20*time.Second, "the stopped VM's sample error", func(s api.Status) bool { return s.Errors["loud"] != "" })
	vm.Signal(syscall.SIGCONT)
	reconnected := func() bool { return strings.Count(a.log.String(), "connected: vm=loud") >= 2 }
	a.waitFor(t, 40*time.Second, "the QMP connection made again and the disk sampled", func(s api.Status) bool {
		_, _, ok := statusL2(s, "loud")
		return reconnected() && ok && s.Errors["loud"] == ""
	})
	deadline := time.Now().Add(20 * time.Second)
	for historyL2(t, a, "loud", set) < first+3 {
		if time.Now().After(deadline) {
			t.Fatal("no new points after the reconnect")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if size, recorded, _ := statusL2(a.status(t), "loud"); size != set || !recorded {
		t.Fatalf("after the reconnect status shows %d (recorded %v); want %d", size, recorded, set)
	}
	if lineWith(a.log.String(), "knob=l2_cache", "result=applied") {
		t.Fatalf("the L2 cache was set again although the record says it is in force:\n%s", grepLines(a.log.String(), "tuning action"))
	}
	t.Logf("L2 %d reported after a restart and a reconnect (command line %d); connections:\n%s", set, original, grepLines(a.log.String(), "connected: vm=loud"))
}
