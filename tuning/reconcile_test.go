package tuning

import (
	"context"
	"errors"
	"testing"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

func wrIOPS(n uint64) state.KnobState { return state.OfThrottle(sample.Throttle{IOPSWrite: n}) }

// A record as a crash between two steps leaves it, checked against
// what the knob holds.
func TestReconcileResolvesEveryPhase(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		phase     string
		holds     uint64
		want      state.Result
		wantPhase string // "" = the record is gone
	}{
		{"intent, change made", state.PhaseIntent, 300, state.ResultResolved, state.PhaseApplied},
		{"intent, change not made", state.PhaseIntent, 0, state.ResultResolved, ""},
		{"intent, someone else's value", state.PhaseIntent, 7, state.ResultDrift, state.PhaseReleased},
		{"failed, change made", state.PhaseFailed, 300, state.ResultResolved, state.PhaseApplied},
		{"applied, in force", state.PhaseApplied, 300, state.ResultNoOp, state.PhaseApplied},
		{"applied, VM restarted to its original", state.PhaseApplied, 0, state.ResultNoOp, state.PhaseApplied},
		{"applied, changed by hand", state.PhaseApplied, 7, state.ResultDrift, state.PhaseReleased},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, Options{})
			o := state.Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Original: wrIOPS(0), Applied: wrIOPS(300), Phase: c.phase}
			if err := r.s.PutOwned(&o); err != nil {
				t.Fatal(err)
			}
			r.b.state[key(vda, policy.KnobThrottle)] = wrIOPS(c.holds)
			out, err := r.e.Reconcile(ctx, o)
			if out.Result != c.want || (err != nil) != (c.want == state.ResultDrift) || (c.want == state.ResultDrift && !errors.Is(err, ErrDrift)) {
				t.Fatalf("reconcile: %+v, %v; want %s", out, err, c.want)
			}
			got, _ := r.s.Owned(vda, policy.KnobThrottle)
			switch {
			case c.wantPhase == "" && got != nil:
				t.Fatalf("record kept: %+v", got)
			case c.wantPhase != "" && (got == nil || got.Phase != c.wantPhase):
				t.Fatalf("record %+v, want phase %s", got, c.wantPhase)
			}
			if r.b.applies != 0 {
				t.Fatal("reconciling changed a knob")
			}
		})
	}
}

// An unknown VM is an error, never a default value: nothing is decided.
func TestReconcileUnknownVM(t *testing.T) {
	r := newRig(t, Options{})
	r.b.gone = map[string]bool{"vm1": true}
	o := state.Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Original: wrIOPS(0), Applied: wrIOPS(300), Phase: state.PhaseIntent}
	r.s.PutOwned(&o)
	if _, err := r.e.Reconcile(context.Background(), o); !errors.Is(err, ErrUnknownVM) {
		t.Fatalf("err %v, want unknown VM", err)
	}
	if got, _ := r.s.Owned(vda, policy.KnobThrottle); got == nil || got.Phase != state.PhaseIntent {
		t.Fatalf("record %+v changed without a reading", got)
	}
	if err := r.e.Forget(o, "gone"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.s.Owned(vda, policy.KnobThrottle); got != nil {
		t.Fatal("forgotten record kept")
	}
}

func l2Size(n uint64) state.KnobState { return state.OfL2(state.L2State{Size: n, Needed: 128 << 20}) }

// QEMU cannot report a qcow2 cache size: after a restart the backend
// says the command line's value, which is the original. A revert sets
// the original anyway, and a change a crash interrupted is undone.
func TestUnreadableKnobIsRestoredWhateverTheBackendSays(t *testing.T) {
	ctx := context.Background()
	l2 := state.Target{VM: "vm1", Disk: "vda"}
	for _, phase := range []string{state.PhaseApplied, state.PhaseIntent} {
		r := newRig(t, Options{})
		o := state.Owned{Target: l2, Knob: policy.KnobL2Cache, Rule: "l2", Original: l2Size(1 << 20), Applied: l2Size(8 << 20), Phase: phase}
		r.s.PutOwned(&o)
		r.b.state[key(l2, policy.KnobL2Cache)] = l2Size(1 << 20) // what a new process believes
		var out Outcome
		var err error
		if phase == state.PhaseApplied {
			out, err = r.e.Execute(ctx, policy.Decision{Rule: "l2", VM: "vm1", Disk: "vda", Knob: policy.KnobL2Cache, Revert: true, Mode: policy.ModeEnforce})
		} else {
			out, err = r.e.Reconcile(ctx, o)
		}
		if err != nil || r.b.applies != 1 {
			t.Fatalf("%s: %+v %v, %d applies; want the original set once", phase, out, err, r.b.applies)
		}
		if got, _ := r.s.Owned(l2, policy.KnobL2Cache); got != nil {
			t.Fatalf("%s: record kept %+v", phase, got)
		}
	}
}
