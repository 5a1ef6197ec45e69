package tuning

import (
	"context"
	"fmt"
	"testing"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

type crash string

// crashAt runs d with the executor stopping at step, as a SIGKILL there
// would: nothing after the step runs.
func crashAt(t *testing.T, e *Executor, step string, d policy.Decision) {
	t.Helper()
	e.fail = func(name string, _ policy.Knob) {
		if name == step {
			panic(crash(name))
		}
	}
	defer func() {
		e.fail = nil
		if r := recover(); r != crash(step) {
			t.Fatalf("%s: execution went past the failpoint (%v)", step, r)
		}
	}()
	e.Execute(context.Background(), d)
}

// holds reports what the backend holds and what the store records.
func holds(t *testing.T, r *rig) (uint64, *state.Owned) {
	t.Helper()
	s, err := r.b.Read(context.Background(), vda, policy.KnobThrottle)
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.s.Owned(vda, policy.KnobThrottle)
	if err != nil {
		t.Fatal(err)
	}
	return s.Throttle().IOPSWrite, o
}

// A crash at each failpoint of an apply and of a revert leaves a record
// that knows the original; the next start, with the rule still firing or
// with it gone, ends with the knob held (record applied) or restored
// (record gone).
func TestCrashAtEachFailpoint(t *testing.T) {
	for _, step := range Failpoints {
		for _, during := range []string{"apply", "revert"} {
			for _, after := range []string{"rule fires", "rule gone"} {
				t.Run(fmt.Sprintf("%s/%s/%s", during, step, after), func(t *testing.T) {
					r := newRig(t, Options{})
					ctx := context.Background()
					r.b.state[key(vda, policy.KnobThrottle)] = state.OfThrottle(sample.Throttle{IOPSWrite: 5000})
					d := throttle(300)
					if during == "revert" {
						if _, err := r.e.Execute(ctx, d); err != nil {
							t.Fatal(err)
						}
						crashAt(t, r.e, step, revertOf(d))
					} else {
						crashAt(t, r.e, step, d)
					}
					if _, o := holds(t, r); o == nil || o.Phase != state.PhaseIntent || o.Original.Throttle().IOPSWrite != 5000 {
						t.Fatalf("after the crash: record %+v, want the intent with the original 5000", o)
					}
					// The restart: a new executor over the same store.
					e := NewExecutor(r.b, r.s, Options{Clock: r.clk})
					next := d
					if after == "rule gone" {
						next = revertOf(d)
					}
					out, err := e.Execute(ctx, next)
					if err != nil {
						t.Fatalf("after the restart: %+v %v", out, err)
					}
					got, o := holds(t, r)
					switch {
					case after == "rule fires" && (got != 300 || o == nil || o.Phase != state.PhaseApplied || o.Original.Throttle().IOPSWrite != 5000):
						t.Fatalf("held: knob %d, record %+v; want 300 applied, original 5000", got, o)
					case after == "rule gone" && (got != 5000 || o != nil):
						t.Fatalf("restored: knob %d, record %+v; want 5000 and no record", got, o)
					}
				})
			}
		}
	}
}

// A knob changed by hand while the agent was down, after a crash between
// the change and its record, is left as the person set it and reported
// as drift, whether the rule still fires or is gone.
func TestCrashThenHandChangeIsDrift(t *testing.T) {
	for _, gone := range []bool{false, true} {
		r := newRig(t, Options{})
		ctx := context.Background()
		crashAt(t, r.e, FailAfterChange, throttle(300))
		r.b.state[key(vda, policy.KnobThrottle)] = state.OfThrottle(sample.Throttle{IOPSWrite: 700})
		next := throttle(300)
		if gone {
			next = revertOf(next)
		}
		out, err := NewExecutor(r.b, r.s, Options{Clock: r.clk}).Execute(ctx, next)
		if out.Result != state.ResultDrift {
			t.Fatalf("rule gone %v: %+v %v, want drift", gone, out, err)
		}
		if got, o := holds(t, r); got != 700 || o == nil || o.Phase != state.PhaseReleased {
			t.Fatalf("rule gone %v: knob %d record %+v, want 700 kept and the record released", gone, got, o)
		}
	}
}
