package policy

import "testing"

// A knob the store says "calm" holds, adopted after a restart: a false
// condition releases it through clear_after (as if the agent had never
// stopped), a true one keeps it without waiting for `for` again.
func TestAdoptedKnobIsReleasedThroughClearAfter(t *testing.T) {
	ev := NewEvaluator(mustParse(t, throttleRule))
	if !ev.Adopt(t0, "calm", "vm1", "vda") {
		t.Fatal("adopt of a rule in the set refused")
	}
	if ev.Adopt(t0, "calm", "vm1", "vda") || ev.Adopt(t0, "gone", "vm1", "vda") {
		t.Fatal("adopt twice, or of a rule not in the set, accepted")
	}
	if s := ev.StateOf("calm", "vm1", "vda"); s != StateFiring {
		t.Fatalf("state after adopt %q, want firing", s)
	}
	got := run(t, ev, []float64{100, 100, 100, 100, 100, 100, 100, 100, 100})
	// False from step 0; clear_after 60 s: the revert at step 6, once.
	if i := firstIndex(got, "revert"); i != 6 {
		t.Errorf("revert at step %d, want 6: %q", i, got)
	}
	if got[7] != "" || got[8] != "" {
		t.Errorf("decisions after the revert: %q", got)
	}

	ev = NewEvaluator(mustParse(t, throttleRule))
	ev.Adopt(t0, "calm", "vm1", "vda")
	if got := run(t, ev, []float64{2000}); got[0] != "apply" {
		t.Errorf("adopted rule still true: %q, want its desired state at once", got)
	}
}
