package agent

import (
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

func histRecord(t *testing.T, a *Agent) *state.Owned {
	t.Helper()
	o, err := a.store.Owned(state.Target{VM: "vm", Disk: "drive1"}, policy.KnobHistogram)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// The histogram a p99 rule had qtune turn on survives a SIGKILL in the
// state store: started again with a policy that does not load, the agent
// keeps it (orphaned: nothing says the rule was removed); once a clean
// policy without the rule is in force, it turns it off and forgets it.
// disk0's histogram, someone else's, is never touched.
func TestHistogramReleasedAfterRestartWithoutItsRule(t *testing.T) {
	r := newHistRig(t, nil)
	a := r.a
	a.setInForce(loadSet(t, avgRule+tailRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	if o := histRecord(t, a); o == nil || o.Phase != state.PhaseApplied || o.Rule != "tail" {
		t.Fatalf("record after turning it on: %+v", o)
	}
	r.kill()

	a = r.start(t)
	a.setInForce(&policy.Set{}, api.PolicyNone, time.Time{})
	sampleOnce(t, a)
	if n := len(r.sets()); n != 1 {
		t.Fatalf("%d histogram sets with no clean policy, want the first alone", n)
	}
	if st := a.ownedStates(time.Now(), []state.Owned{*histRecord(t, a)}); st[0].State != api.OwnedOrphaned {
		t.Fatalf("with no clean policy: %+v, want orphaned", st[0])
	}
	a.setInForce(loadSet(t, avgRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	got := r.sets()
	if len(got) != 2 || got[1]["id"] != drive1 || len(got[1]) != 1 {
		t.Fatalf("histogram sets %v, want the second to turn %s off", got, drive1)
	}
	if o := histRecord(t, a); o != nil {
		t.Fatalf("record after turning it off: %+v", o)
	}
	if n := a.recon.settled[string(policy.KnobHistogram)]; n != 1 {
		t.Errorf("settled %d histograms this cycle, want 1", n)
	}
}

// A histogram qtune turned on and someone else removed is let go: not
// set again while the rule stays, the record dropped when it goes.
func TestHistogramRemovedBySomeoneElseIsLetGo(t *testing.T) {
	r := newHistRig(t, nil)
	a := r.a
	a.setInForce(loadSet(t, tailRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	r.remove()
	sampleOnce(t, a)
	sampleOnce(t, a)
	if o := histRecord(t, a); o == nil || o.Phase != state.PhaseReleased {
		t.Fatalf("record after someone removed it: %+v, want released", o)
	}
	if st := a.ownedStates(time.Now(), []state.Owned{*histRecord(t, a)}); st[0].State != api.OwnedDrifted {
		t.Fatalf("state %+v, want drifted", st[0])
	}
	if n := len(r.sets()); n != 1 {
		t.Fatalf("%d histogram sets, want the first alone: qtune does not fight", n)
	}
	a.setInForce(loadSet(t, avgRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	if o := histRecord(t, a); o != nil || len(r.sets()) != 1 {
		t.Fatalf("after the rule went: record %+v, sets %v; want no record and nothing sent", o, r.sets())
	}
}

// Under dry_run histograms still go on (a p99 rule could not be decided
// without them), and are recorded like any change.
func TestHistogramsInDryRun(t *testing.T) {
	r := newHistRig(t, nil)
	a := r.a
	a.exec = tuning.NewExecutor(a.src.Backend(), a.store, tuning.Options{DryRun: true, Identify: a.vmIdentity})
	a.setInForce(loadSet(t, tailRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	if o := histRecord(t, a); o == nil || o.Phase != state.PhaseApplied || len(r.sets()) != 1 {
		t.Fatalf("dry run: record %+v, sets %v", o, r.sets())
	}
}
