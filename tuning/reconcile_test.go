package tuning

import (
	"strings"

	"context"
	"errors"
	bolt "go.etcd.io/bbolt"
	"testing"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

func wrIOPS(n uint64) KnobState { return KnobState{Throttle: &sample.Throttle{IOPSWrite: n}} }

// A record as a crash between two steps leaves it, checked against
// what the knob holds.
func TestReconcileResolvesEveryPhase(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		phase     string
		holds     uint64
		want      Result
		wantPhase string // "" = the record is gone
	}{
		{"intent, change made", PhaseIntent, 300, ResultResolved, PhaseApplied},
		{"intent, change not made", PhaseIntent, 0, ResultResolved, ""},
		{"intent, someone else's value", PhaseIntent, 7, ResultDrift, PhaseReleased},
		{"failed, change made", PhaseFailed, 300, ResultResolved, PhaseApplied},
		{"applied, in force", PhaseApplied, 300, ResultNoOp, PhaseApplied},
		{"applied, VM restarted to its original", PhaseApplied, 0, ResultNoOp, PhaseApplied},
		{"applied, changed by hand", PhaseApplied, 7, ResultDrift, PhaseReleased},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, Options{})
			o := Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Original: wrIOPS(0), Applied: wrIOPS(300), Phase: c.phase}
			if err := r.s.PutOwned(&o); err != nil {
				t.Fatal(err)
			}
			r.b.state[key(vda, policy.KnobThrottle)] = wrIOPS(c.holds)
			out, err := r.e.Reconcile(ctx, o)
			if out.Result != c.want || (err != nil) != (c.want == ResultDrift) || (c.want == ResultDrift && !errors.Is(err, ErrDrift)) {
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
	o := Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Original: wrIOPS(0), Applied: wrIOPS(300), Phase: PhaseIntent}
	r.s.PutOwned(&o)
	if _, err := r.e.Reconcile(context.Background(), o); !errors.Is(err, ErrUnknownVM) {
		t.Fatalf("err %v, want unknown VM", err)
	}
	if got, _ := r.s.Owned(vda, policy.KnobThrottle); got == nil || got.Phase != PhaseIntent {
		t.Fatalf("record %+v changed without a reading", got)
	}
	if err := r.e.Forget(o, "gone"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.s.Owned(vda, policy.KnobThrottle); got != nil {
		t.Fatal("forgotten record kept")
	}
}

// One record that does not decode is named and the others still listed.
func TestAllOwnedSkipsABadRecord(t *testing.T) {
	r := newRig(t, Options{})
	r.s.PutOwned(&Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Phase: PhaseApplied})
	r.s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOwned).Put([]byte("vm2\x00vdb\x00throttle"), []byte("{not json"))
	})
	all, err := r.s.AllOwned()
	if len(all) != 1 || err == nil || !strings.Contains(err.Error(), `"vm2/vdb/throttle"`) {
		t.Fatalf("AllOwned = %+v, %v; want the good record and an error naming the bad one", all, err)
	}
}

func l2Size(n uint64) KnobState { return KnobState{L2: &L2State{Size: n, Needed: 128 << 20}} }

// QEMU cannot report a qcow2 cache size: after a restart the backend
// says the command line's value, which is the original. A revert sets
// the original anyway, and a change a crash interrupted is undone.
func TestUnreadableKnobIsRestoredWhateverTheBackendSays(t *testing.T) {
	ctx := context.Background()
	l2 := Target{VM: "vm1", Disk: "vda"}
	for _, phase := range []string{PhaseApplied, PhaseIntent} {
		r := newRig(t, Options{})
		o := Owned{Target: l2, Knob: policy.KnobL2Cache, Rule: "l2", Original: l2Size(1 << 20), Applied: l2Size(8 << 20), Phase: phase}
		r.s.PutOwned(&o)
		r.b.state[key(l2, policy.KnobL2Cache)] = l2Size(1 << 20) // what a new process believes
		var out Outcome
		var err error
		if phase == PhaseApplied {
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
