package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

const calmRule = `rule "calm" {
  when = disk.write_iops > 1000
  throttle { write_iops = 256 }
}
`

// lastGoodAgent is an agent with its store open and an owned throttle
// of rule "calm", over a policy directory holding files.
func lastGoodAgent(t *testing.T, files map[string]string) *Agent {
	t.Helper()
	cfg := config.Defaults()
	cfg.PolicyDir, cfg.StateDir = t.TempDir(), t.TempDir()
	for n, text := range files {
		if err := os.WriteFile(filepath.Join(cfg.PolicyDir, n), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Error}))
	s, err := state.OpenStore(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	a.store = s
	o := &state.Owned{Target: state.Target{VM: "a", Disk: "disk0"}, Knob: policy.KnobThrottle, Rule: "calm", Phase: state.PhaseApplied}
	if err := s.PutOwned(o); err != nil {
		t.Fatal(err)
	}
	return a
}

func ruleNames(a *Agent) []string {
	var out []string
	for _, r := range a.eval.Set().Rules {
		out = append(out, r.Name)
	}
	return out
}

func TestBrokenPolicyAtStartRunsTheLastGoodSet(t *testing.T) {
	a := lastGoodAgent(t, map[string]string{"calm.hcl": calmRule})
	a.loadInitialPolicy() // clean: recorded as the last good set
	if got := a.Snapshot().Policy.Source; got != api.PolicyFromFiles {
		t.Fatalf("source %q, want files", got)
	}
	// Restart with a typo in another file.
	if err := os.WriteFile(filepath.Join(a.cfg.PolicyDir, "typo.hcl"), []byte("rule \"x\" {\n  when = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.loadInitialPolicy()
	st := a.Snapshot().Policy
	if st.Source != api.PolicyFromStore || st.Error == "" || st.BrokenSince.IsZero() || st.LoadedAt.IsZero() {
		t.Fatalf("policy status %+v: want the last good set in force, the error and since when", st)
	}
	if got := ruleNames(a); len(got) != 1 || got[0] != "calm" {
		t.Fatalf("rules in force %v, want [calm]", got)
	}
	if d := st.Defs; len(d) != 1 || d[0].Name != "calm" || d[0].Hash == "" || filepath.Base(d[0].File) != "calm.hcl" {
		t.Fatalf("rule definitions in status %+v, want calm from calm.hcl with its hash", d)
	}
	// The rule is in the set in force, so the knob it owns is kept
	// (reconciled with a reachable VM).
	r := &reconRig{a: a, b: &knobs{vms: map[string]bool{"a": true}, state: map[string]state.KnobState{}}, clk: clock.NewFake(time.Now())}
	r.src, a.clock = &fakeSource{b: r.b}, r.clk
	a.src, a.exec = r.src, tuning.NewExecutor(r.b, a.store, tuning.Options{Clock: r.clk, Log: hclog.NewNullLogger()})
	a.recon.checked["a/disk0/throttle"] = true // its record has no values to read back
	if st := r.step(t); ownedState(st, "a") != api.OwnedHeld {
		t.Fatalf("owned %+v: want held by the last good set's rule", st.Owned)
	}
}

func TestBrokenPolicyAtFirstStartReleasesNothing(t *testing.T) {
	for name, stored := range map[string]map[string][]byte{
		"no stored set": nil,
		// A stored set that this qtune no longer parses counts as none.
		"stored set no longer parses": {"old.hcl": []byte("rule \"calm\" {\n  when = disk.no_such_metric > 1\n  throttle { write_iops = 1 }\n}\n")},
	} {
		t.Run(name, func(t *testing.T) {
			a := lastGoodAgent(t, map[string]string{"typo.hcl": "rule \"calm\" {\n  when = \n"})
			if stored != nil {
				if err := a.store.PutLastGoodPolicy(stored, a.clock.Now()); err != nil {
					t.Fatal(err)
				}
			}
			a.loadInitialPolicy()
			if st := a.Snapshot().Policy; st.Source != api.PolicyNone || st.Error == "" {
				t.Fatalf("policy status %+v: want none in force and the error", st)
			}
			if a.rulesCanBeRemoved() {
				t.Fatal("a policy that did not load may remove rules")
			}
			// a.exec is nil: any revert attempted here would panic.
			r := &reconRig{a: a, b: &knobs{vms: map[string]bool{"a": true}}, clk: clock.NewFake(time.Now())}
			r.src, a.src = &fakeSource{b: r.b}, &fakeSource{b: r.b}
			a.recon.checked["a/disk0/throttle"] = true // no read: nothing but the release is under test
			if st := r.step(t); ownedState(st, "a") != api.OwnedOrphaned {
				t.Fatalf("owned %+v: want orphaned, kept", st.Owned)
			}
			if o, _ := a.store.Owned(state.Target{VM: "a", Disk: "disk0"}, policy.KnobThrottle); o == nil {
				t.Fatal("the owned throttle was released")
			}
		})
	}
}
