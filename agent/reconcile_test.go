package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// knobs is a backend that behaves like the real ones: a VM it does not
// have is an error, never a default value.
type knobs struct {
	vms   map[string]bool
	state map[string]state.KnobState
}

func (k *knobs) Read(_ context.Context, t state.Target, kn policy.Knob) (state.KnobState, error) {
	if !k.vms[t.VM] {
		return state.KnobState{}, fmt.Errorf("%s: %w", t.VM, tuning.ErrUnknownVM)
	}
	if s, ok := k.state[t.String()+"/"+string(kn)]; ok {
		return s, nil
	}
	return wr(0), nil
}

func (k *knobs) Apply(_ context.Context, t state.Target, kn policy.Knob, s state.KnobState, _ bool) error {
	if !k.vms[t.VM] {
		return fmt.Errorf("%s: %w", t.VM, tuning.ErrUnknownVM)
	}
	k.state[t.String()+"/"+string(kn)] = s
	return nil
}

func wr(n uint64) state.KnobState { return state.OfThrottle(sample.Throttle{IOPSWrite: n}) }

// fakeSource reports the VMs of its backend as sampled.
type fakeSource struct {
	b    *knobs
	gone []string
	fail error // the whole sample fails, as a bulk call that timed out
	// migrates: VMs may leave with their live settings (libvirt)
	migrates bool
	ids      map[string]sample.VMIdentity // VM: its identity now
	idNotes  map[string]string            // VM: why its identity is unknown
}

func (s *fakeSource) Identity(vm string) (sample.VMIdentity, string) { return s.ids[vm], s.idNotes[vm] }

func (s *fakeSource) VMsMigrate() bool { return s.migrates }

func (s *fakeSource) Name() string              { return "fake" }
func (s *fakeSource) Run(context.Context)       {}
func (s *fakeSource) Backend() tuning.Backend   { return s.b }
func (s *fakeSource) Tainted() []string         { return nil }
func (s *fakeSource) Connected() (bool, uint64) { return true, 0 }
func (s *fakeSource) disks(now time.Time) []sample.Disk {
	var out []sample.Disk
	for vm := range s.b.vms {
		out = append(out, sample.Disk{VM: vm, Name: "disk0", Time: now})
	}
	return out
}
func (s *fakeSource) Sample(context.Context) ([]sample.Disk, map[string]error, []string) {
	g := s.gone
	s.gone = nil
	if s.fail != nil {
		return nil, map[string]error{sourceError: s.fail}, g
	}
	return s.disks(time.Now()), nil, g
}

type reconRig struct {
	a   *Agent
	b   *knobs
	src *fakeSource
	clk *clock.Fake
}

// newReconRig is an agent over policy files, a store holding owned, and
// a backend where no VM is reachable yet.
func newReconRig(t *testing.T, files map[string]string, owned ...state.Owned) *reconRig {
	t.Helper()
	cfg := config.Defaults()
	cfg.PolicyDir, cfg.StateDir = t.TempDir(), t.TempDir()
	for n, text := range files {
		if err := os.WriteFile(filepath.Join(cfg.PolicyDir, n), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Error}))
	clk := clock.NewFake(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	a.clock = clk
	s, err := state.OpenStore(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a.store = s
	for i := range owned {
		if err := s.PutOwned(&owned[i]); err != nil {
			t.Fatal(err)
		}
	}
	b := &knobs{vms: map[string]bool{}, state: map[string]state.KnobState{}}
	src := &fakeSource{b: b, ids: map[string]sample.VMIdentity{}, idNotes: map[string]string{}}
	a.src = src
	a.exec = tuning.NewExecutor(b, s, tuning.Options{Clock: clk, Log: hclog.NewNullLogger(), Identify: a.vmIdentity})
	a.loadInitialPolicy()
	return &reconRig{a: a, b: b, src: src, clk: clk}
}

// step runs reconciliation and the cycle's publication as a cycle does.
func (r *reconRig) step(t *testing.T) api.Status {
	t.Helper()
	r.clk.Advance(time.Second)
	now := r.clk.Now()
	disks, errs, gone := r.src.Sample(context.Background())
	r.a.reconcileOwned(context.Background(), now, disks, errs, gone)
	r.a.publish(now, 0, nil, nil, errs, r.a.recon.actions)
	return r.a.Snapshot()
}

func (r *reconRig) holds(vm string) uint64 {
	s, ok := r.b.state[vm+"/disk0/throttle"]
	if !ok {
		return 0
	}
	return s.Throttle().IOPSWrite
}

func ownedThrottle(vm, rule string, applied uint64) state.Owned {
	return state.Owned{Target: state.Target{VM: vm, Disk: "disk0"}, Knob: policy.KnobThrottle, Rule: rule,
		Original: wr(0), Applied: wr(applied), Phase: state.PhaseApplied}
}

func ownedState(st api.Status, vm string) string {
	for _, o := range st.Owned {
		if o.VM == vm {
			return o.State
		}
	}
	return "none"
}

// The restart without the rule: a and b were throttled to 256 and the
// rule removed while the agent was down; b was changed by hand. Until
// their VMs are reachable both are orphaned and nothing is lost; then a
// is restored and b handed over with the value set by hand.
func TestRuleRemovedWhileDownIsReleasedOnceReachable(t *testing.T) {
	r := newReconRig(t, map[string]string{"none.hcl": "# no rules\n"},
		ownedThrottle("a", "calm", 256), ownedThrottle("b", "calm", 256))
	for i := 0; i < 2; i++ {
		st := r.step(t)
		if ownedState(st, "a") != api.OwnedOrphaned || ownedState(st, "b") != api.OwnedOrphaned {
			t.Fatalf("cycle %d, VMs unreachable: %+v; want both orphaned", i, st.Owned)
		}
	}
	r.b.vms["a"], r.b.vms["b"] = true, true
	r.b.state["a/disk0/throttle"], r.b.state["b/disk0/throttle"] = wr(256), wr(999)
	st := r.step(t)
	if len(st.Owned) != 0 || st.OwnedSettled["throttle"] != 2 {
		t.Fatalf("owned after the VMs came back: %+v settled %v; want none left, two settled", st.Owned, st.OwnedSettled)
	}
	if r.holds("a") != 0 || r.holds("b") != 999 {
		t.Fatalf("a holds %d (want 0, restored), b holds %d (want 999, as set by hand)", r.holds("a"), r.holds("b"))
	}
	recs, _ := r.a.store.Records(10)
	var results []string
	for _, rec := range recs {
		results = append(results, rec.VM+":"+string(rec.Result))
	}
	got := strings.Join(results, " ")
	if !strings.Contains(got, "a:reverted") || !strings.Contains(got, "b:drift") {
		t.Fatalf("decision log %q: want a reverted and b's drift", got)
	}
}

// After a restart the evaluator learns from the store which knobs its
// rules hold: a rule that is now false releases its knob through
// clear_after; one that still holds keeps it.
func TestOwnedKnobIsAdoptedByItsRule(t *testing.T) {
	rule := "rule \"calm\" {\n  when = disk.write_iops > 1000\n  clear_after = \"30s\"\n  throttle { write_iops = 256 }\n}\n"
	r := newReconRig(t, map[string]string{"calm.hcl": rule}, ownedThrottle("a", "calm", 256))
	r.b.vms["a"] = true
	r.b.state["a/disk0/throttle"] = wr(256)
	st := r.step(t)
	if ownedState(st, "a") != api.OwnedHeld {
		t.Fatalf("owned %+v, want held by its rule", st.Owned)
	}
	// The disk is quiet now: the revert comes after clear_after.
	var reverted time.Time
	start := r.clk.Now()
	for i := 0; i < 40 && reverted.IsZero(); i++ {
		r.clk.Advance(time.Second)
		now := r.clk.Now()
		p := sample.Point{Disk: sample.Disk{VM: "a", Name: "disk0", Time: now, Throttle: sample.Throttle{IOPSWrite: 256}},
			Rates: sample.Rates{WriteIOPS: 10}}
		for _, d := range r.a.eval.Evaluate(now, []sample.Point{p}) {
			if d.Revert {
				r.a.execute(context.Background(), d)
				reverted = now
			}
		}
	}
	if reverted.IsZero() || reverted.Sub(start) < 30*time.Second {
		t.Fatalf("revert at %v after adoption, want after clear_after (30s)", reverted.Sub(start))
	}
	if r.holds("a") != 0 {
		t.Fatalf("a holds %d after the revert, want 0", r.holds("a"))
	}
}

// A record a crash left in the intent phase is resolved once its VM is
// reachable; a VM gone with its QEMU process takes its live change with
// it, while a persistent change waits for the VM.
func TestIntentResolvedAndGoneVMForgotten(t *testing.T) {
	rule := "rule \"calm\" {\n  when = disk.write_iops > 1000\n  throttle { write_iops = 256 }\n}\n"
	intent := ownedThrottle("a", "calm", 256)
	intent.Phase = state.PhaseIntent
	persisted := ownedThrottle("p", "calm", 256)
	persisted.Persist = true
	r := newReconRig(t, map[string]string{"calm.hcl": rule}, intent, ownedThrottle("g", "calm", 256), persisted)
	r.b.vms["a"] = true
	r.b.state["a/disk0/throttle"] = wr(256)
	var st api.Status
	for i := 0; i < goneCycles; i++ {
		st = r.step(t)
	}
	if o, _ := r.a.store.Owned(intent.Target, policy.KnobThrottle); o == nil || o.Phase != state.PhaseApplied {
		t.Fatalf("intent record %+v, want resolved as applied", o)
	}
	if ownedState(st, "g") != "none" || st.OwnedSettled["throttle"] != 1 {
		t.Fatalf("owned %+v settled %v: want g forgotten in the last cycle", st.Owned, st.OwnedSettled)
	}
	if ownedState(st, "p") != api.OwnedOrphaned {
		t.Fatalf("persistent change of an absent VM: %q, want orphaned (kept)", ownedState(st, "p"))
	}
}

// A policy that never loaded cannot say a rule was removed: the knob is
// orphaned, not released, however reachable its VM.
func TestNoCleanPolicyReleasesNothing(t *testing.T) {
	r := newReconRig(t, map[string]string{"typo.hcl": "rule \"calm\" {\n  when = \n"}, ownedThrottle("a", "calm", 256))
	r.b.vms["a"] = true
	r.b.state["a/disk0/throttle"] = wr(256)
	st := r.step(t)
	if ownedState(st, "a") != api.OwnedOrphaned || r.holds("a") != 256 {
		t.Fatalf("owned %+v, a holds %d: want orphaned and kept at 256", st.Owned, r.holds("a"))
	}
	if !strings.Contains(st.Owned[0].Reason, "no policy that loaded cleanly") {
		t.Fatalf("reason %q", st.Owned[0].Reason)
	}
}

// A sample that fails as a whole says nothing about which VMs exist:
// however long it lasts, no live change is forgotten.
func TestFailedSampleForgetsNothing(t *testing.T) {
	rule := "rule \"calm\" {\n  when = disk.write_iops > 1000\n  throttle { write_iops = 256 }\n}\n"
	r := newReconRig(t, map[string]string{"calm.hcl": rule}, ownedThrottle("a", "calm", 256))
	r.src.fail = errors.New("bulk stats: deadline exceeded")
	for i := 0; i < 2*goneCycles; i++ {
		if st := r.step(t); ownedState(st, "a") != api.OwnedOrphaned {
			t.Fatalf("cycle %d: owned %+v, want a orphaned and kept", i, st.Owned)
		}
	}
	r.src.fail = nil
	for i := 0; i < goneCycles; i++ {
		r.step(t)
	}
	if o, _ := r.a.store.Owned(state.Target{VM: "a", Disk: "disk0"}, policy.KnobThrottle); o != nil {
		t.Fatalf("record %+v kept once the source answered without a", o)
	}
}

// Under libvirt a domain that is not running may be away with its live
// throttles (migrated) and come back: its records wait, orphaned, and
// only a domain away for forgetAbsentAfter is taken as gone for good.
func TestAbsentLibvirtDomainKeepsItsRecords(t *testing.T) {
	rule := "rule \"calm\" {\n  when = disk.write_iops > 1000\n  throttle { write_iops = 256 }\n}\n"
	r := newReconRig(t, map[string]string{"calm.hcl": rule}, ownedThrottle("m", "calm", 256))
	r.src.migrates = true
	for i := 0; i < 2*goneCycles; i++ {
		if st := r.step(t); ownedState(st, "m") != api.OwnedOrphaned {
			t.Fatalf("cycle %d: owned %+v, want m orphaned and kept", i, st.Owned)
		}
	}
	// Back with qtune's throttle (migrated back): held again.
	r.b.vms["m"] = true
	r.b.state["m/disk0/throttle"] = wr(256)
	if st := r.step(t); ownedState(st, "m") != api.OwnedHeld {
		t.Fatalf("owned %+v after the domain came back, want held", st.Owned)
	}
	// Away for good.
	delete(r.b.vms, "m")
	r.step(t)
	r.clk.Advance(forgetAbsentAfter)
	if st := r.step(t); ownedState(st, "m") != "none" {
		t.Fatalf("owned %+v after a day away, want forgotten", st.Owned)
	}
}
