package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// A rule removed by a reload lets go of its knob at once; that revert is
// among the actions status shows, as every executed decision is.
func TestReloadRevertIsInStatus(t *testing.T) {
	rule := "rule \"l2\" {\n  when = disk.virtual_size > 0\n  l2_cache { size = \"2MiB\" }\n}\n"
	rec := state.Owned{Target: state.Target{VM: "a", Disk: "disk0"}, Knob: policy.KnobL2Cache, Rule: "l2",
		Original: l2(512 << 10), Applied: l2(2 << 20), Phase: state.PhaseApplied}
	r := newReconRig(t, map[string]string{"l2.hcl": rule}, rec)
	r.a.src = &cmdlineSource{fakeSource: fakeSource{b: r.b}, now: r.clk.Now}
	r.b.vms["a"] = true
	r.b.state["a/disk0/l2_cache"] = l2(2 << 20)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		r.clk.Advance(time.Second)
		r.a.cycle(ctx)
	}
	if err := os.WriteFile(filepath.Join(r.a.cfg.PolicyDir, "l2.hcl"), []byte("# gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.a.reload(ctx)
	r.clk.Advance(time.Second)
	r.a.cycle(ctx)
	st := r.a.Snapshot()
	reverted := 0
	for _, act := range st.Actions {
		if act.Rule == "l2" && act.Result == string(state.ResultReverted) {
			reverted++
		}
	}
	if reverted != 1 || len(st.Owned) != 0 {
		t.Fatalf("actions %+v, owned %+v; want the reload's revert shown once and nothing owned", st.Actions, st.Owned)
	}
	r.clk.Advance(time.Second)
	r.a.cycle(ctx)
	if n := len(r.a.Snapshot().Actions); n != len(st.Actions) {
		t.Errorf("the next cycle added %d actions; the revert is shown once", n-len(st.Actions))
	}
}
