package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// cmdlineSource samples qcow2 disks whose L2 cache size is what its
// backend believes, as the real sources do: the command line's value
// after every start and reconnect, what qtune set after a change.
type cmdlineSource struct {
	fakeSource
	now func() time.Time
}

func (s *cmdlineSource) Sample(context.Context) ([]sample.Disk, map[string]error, []string) {
	var out []sample.Disk
	for vm := range s.b.vms {
		d := sample.Disk{VM: vm, Name: "disk0", Format: "qcow2", Time: s.now(), VirtualSize: 8 << 30, ClusterSize: 64 << 10}
		if st, ok := s.b.state[vm+"/disk0/l2_cache"]; ok && st.L2() != nil {
			d.L2CacheSize = st.L2().Size
		}
		out = append(out, d)
	}
	return out, nil, nil
}

func l2(n uint64) state.KnobState {
	return state.OfL2(state.L2State{Size: n, Needed: 1 << 20})
}

// diskL2 is the L2 figure status shows for vm's disk0, and whether it
// says the figure is a record.
func diskL2(st api.Status, vm string) (uint64, bool) {
	for _, v := range st.VMs {
		for _, d := range v.Disks {
			if v.Name == vm && d.Name == "disk0" {
				return d.L2CacheSize, slices.Contains(d.Recorded, string(policy.KnobL2Cache))
			}
		}
	}
	return 0, false
}

// QEMU cannot report an L2 cache size: after the agent restarts, and
// after every reconnect, its backend and sampler know only the command
// line's 512 KiB. qtune's applied record of 2 MiB is what policies,
// status and the executor see from the first sample on, nothing is set
// again for a value the record says is in force; once the record is
// gone, the sample is the backend's again.
func TestL2FigureIsTheRecordAfterRestart(t *testing.T) {
	rule := "rule \"l2\" {\n  when = disk.virtual_size > 0\n  l2_cache { size = \"2MiB\" }\n}\n"
	rec := state.Owned{Target: state.Target{VM: "a", Disk: "disk0"}, Knob: policy.KnobL2Cache, Rule: "l2",
		Original: l2(512 << 10), Applied: l2(2 << 20), Phase: state.PhaseApplied}
	r := newReconRig(t, map[string]string{"l2.hcl": rule}, rec)
	src := &cmdlineSource{fakeSource: fakeSource{b: r.b}, now: r.clk.Now}
	r.a.src = src
	r.b.vms["a"] = true
	r.b.state["a/disk0/l2_cache"] = l2(512 << 10) // a new process: the command line
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if i == 2 {
			r.b.state["a/disk0/l2_cache"] = l2(512 << 10) // a reconnect rebuilt it from the command line
		}
		r.clk.Advance(time.Second)
		r.a.cycle(ctx)
		st := r.a.Snapshot()
		if i == 0 {
			continue // a first sample has no rates yet: no point, no disk in status
		}
		if got, recorded := diskL2(st, "a"); got != 2<<20 || !recorded {
			t.Fatalf("cycle %d: status shows an L2 cache of %d (recorded %v); want the record's 2 MiB", i, got, recorded)
		}
		for _, act := range st.Actions {
			if act.Result == string(state.ResultApplied) {
				t.Fatalf("cycle %d: %+v; the record says 2 MiB is in force, nothing to set", i, act)
			}
		}
	}
	h := r.a.history
	if p := h[len(h)-1].Points; len(p) != 1 || p[0].Disk.L2CacheSize != 2<<20 {
		t.Fatalf("history %+v; want the record's figure for policies", p)
	}
	if err := os.WriteFile(filepath.Join(r.a.cfg.PolicyDir, "l2.hcl"), []byte("# gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.a.reload(ctx)
	r.clk.Advance(time.Second)
	r.a.cycle(ctx)
	st := r.a.Snapshot()
	if got, recorded := diskL2(st, "a"); len(st.Owned) != 0 || got != 512<<10 || recorded {
		t.Fatalf("rule removed: owned %+v, L2 %d (recorded %v); want the original set back and read as the backend says", st.Owned, got, recorded)
	}
}
