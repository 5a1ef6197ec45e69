package tuning

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend holds knob states in memory; hooks inject failures.
type fakeBackend struct {
	state    map[string]state.KnobState
	applies  int
	failNext error
	// lie makes Apply store something other than asked (verify mismatch).
	lie     bool
	onApply func()
	// gone: VMs the backend does not know (an error, as in QEMU and libvirt).
	gone map[string]bool
}

func key(t state.Target, k policy.Knob) string { return t.String() + "/" + string(k) }

func (f *fakeBackend) Read(_ context.Context, t state.Target, k policy.Knob) (state.KnobState, error) {
	if f.gone[t.VM] {
		return state.KnobState{}, fmt.Errorf("%s: %w", t.VM, ErrUnknownVM)
	}
	s, ok := f.state[key(t, k)]
	if !ok {
		switch k {
		case policy.KnobThrottle:
			return state.OfThrottle(sample.Throttle{}), nil
		case policy.KnobCache:
			return state.OfCache(state.CacheState{}), nil
		case policy.KnobL2Cache:
			return state.OfL2(state.L2State{Size: 1 << 20, Needed: 128 << 20}), nil
		}
	}
	return s, nil
}

func (f *fakeBackend) Apply(_ context.Context, t state.Target, k policy.Knob, s state.KnobState, _ bool) error {
	if f.gone[t.VM] {
		return fmt.Errorf("%s: %w", t.VM, ErrUnknownVM)
	}
	if f.onApply != nil {
		f.onApply()
	}
	if f.failNext != nil {
		err := f.failNext
		f.failNext = nil
		return err
	}
	f.applies++
	if f.lie && s.Throttle() != nil {
		x := *s.Throttle()
		x.IOPSWrite++
		s = state.OfThrottle(x)
	}
	f.state[key(t, k)] = s
	return nil
}

type rig struct {
	b   *fakeBackend
	s   *state.Store
	clk *clock.Fake
	e   *Executor
}

func newRig(t *testing.T, o Options) *rig {
	t.Helper()
	s, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := &fakeBackend{state: map[string]state.KnobState{}}
	clk := clock.NewFake(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC))
	o.Clock = clk
	return &rig{b: b, s: s, clk: clk, e: NewExecutor(b, s, o)}
}

var vda = state.Target{VM: "vm1", Disk: "vda"}

func throttle(iopsWr uint64) policy.Decision {
	return policy.Decision{Rule: "calm", VM: "vm1", Disk: "vda", Knob: policy.KnobThrottle, Mode: policy.ModeEnforce,
		Cooldown: time.Minute, Action: policy.Action{Throttle: &sample.Throttle{IOPSWrite: iopsWr}},
		Inputs: map[string]float64{"disk.write_iops": 3000}}
}

func revertOf(d policy.Decision) policy.Decision {
	d.Revert, d.Action = true, policy.Action{}
	return d
}

func refusal(t *testing.T, err error, code RefusalCode) {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) || r.Code != code {
		t.Fatalf("err = %v, want refusal %s", err, code)
	}
}

func TestApplyVerifyRevert(t *testing.T) {
	r := newRig(t, Options{})
	ctx := context.Background()
	out, err := r.e.Execute(ctx, throttle(300))
	if err != nil || out.Result != state.ResultApplied || out.After.Throttle().IOPSWrite != 300 {
		t.Fatalf("%+v %v", out, err)
	}
	o, _ := r.s.Owned(vda, policy.KnobThrottle)
	if o == nil || o.Phase != state.PhaseApplied || o.Original.Throttle().Active() {
		t.Fatalf("owned %+v", o)
	}
	out, err = r.e.Execute(ctx, revertOf(throttle(300)))
	if err != nil || out.Result != state.ResultReverted || out.After.Throttle().Active() {
		t.Fatalf("revert %+v %v", out, err)
	}
	if o, _ := r.s.Owned(vda, policy.KnobThrottle); o != nil {
		t.Fatalf("still owned after revert: %+v", o)
	}
	recs, _ := r.s.Records(10)
	if len(recs) != 2 || recs[0].Result != state.ResultApplied || recs[1].Result != state.ResultReverted || recs[0].Inputs["disk.write_iops"] != 3000 {
		t.Fatalf("records %+v", recs)
	}
}

func TestNoOpStartsNoCooldown(t *testing.T) {
	r := newRig(t, Options{})
	ctx := context.Background()
	r.b.state[key(vda, policy.KnobThrottle)] = state.OfThrottle(sample.Throttle{IOPSWrite: 300})
	out, err := r.e.Execute(ctx, throttle(300))
	if err != nil || out.Result != state.ResultNoOp || r.b.applies != 0 {
		t.Fatalf("%+v %v applies=%d", out, err, r.b.applies)
	}
	if out, err := r.e.Execute(ctx, throttle(200)); err != nil || out.Result != state.ResultApplied {
		t.Fatalf("change after a no-op: %+v %v", out, err)
	}
}

func TestCooldownMinChangeAndRateLimits(t *testing.T) {
	r := newRig(t, Options{Limits: Limits{PerVMPerHour: 3, PerHostPerMinute: 100}})
	ctx := context.Background()
	if _, err := r.e.Execute(ctx, throttle(300)); err != nil {
		t.Fatal(err)
	}
	_, err := r.e.Execute(ctx, throttle(200))
	refusal(t, err, "cooldown")
	r.clk.Advance(2 * time.Minute)
	_, err = r.e.Execute(ctx, throttle(295))
	refusal(t, err, "min-change")
	for _, v := range []uint64{200, 100} {
		if _, err := r.e.Execute(ctx, throttle(v)); err != nil {
			t.Fatal(err)
		}
		r.clk.Advance(2 * time.Minute)
	}
	_, err = r.e.Execute(ctx, throttle(50))
	refusal(t, err, "rate-limit-vm")
	r.clk.Advance(time.Hour)
	if _, err := r.e.Execute(ctx, throttle(50)); err != nil {
		t.Fatalf("after an hour: %v", err)
	}

	h := newRig(t, Options{Limits: Limits{PerHostPerMinute: 2}})
	for i, vm := range []string{"a", "b", "c"} {
		d := throttle(300)
		d.VM = vm
		_, err := h.e.Execute(ctx, d)
		if i < 2 && err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			refusal(t, err, "rate-limit-host")
		}
	}
}

func TestBoundsAndUnsafe(t *testing.T) {
	r := newRig(t, Options{})
	ctx := context.Background()
	_, err := r.e.Execute(ctx, throttle(3))
	refusal(t, err, "bounds")
	d := policy.Decision{Rule: "c", VM: "vm1", Disk: "vda", Knob: policy.KnobCache, Action: policy.Action{Cache: &policy.CacheSpec{NoFlush: true}}}
	_, err = r.e.Execute(ctx, d)
	refusal(t, err, "bounds")
	if r.b.applies != 0 {
		t.Fatal("a refused decision reached the backend")
	}
}

func TestRecommendAndDryRunNeverAct(t *testing.T) {
	r := newRig(t, Options{})
	d := throttle(300)
	d.Mode = policy.ModeRecommend
	out, err := r.e.Execute(context.Background(), d)
	if err != nil || out.Result != state.ResultRecommended || out.After.Throttle().IOPSWrite != 300 || r.b.applies != 0 {
		t.Fatalf("%+v %v", out, err)
	}
	dr := newRig(t, Options{DryRun: true})
	out, err = dr.e.Execute(context.Background(), throttle(300))
	if err != nil || out.Result != state.ResultDryRun || dr.b.applies != 0 {
		t.Fatalf("%+v %v", out, err)
	}
	if o, _ := dr.s.Owned(vda, policy.KnobThrottle); o != nil {
		t.Fatal("dry run took ownership")
	}
}

func TestDriftOnRevertLeavesKnobAlone(t *testing.T) {
	r := newRig(t, Options{})
	ctx := context.Background()
	r.e.Execute(ctx, throttle(300))
	// An operator sets their own limit.
	r.b.state[key(vda, policy.KnobThrottle)] = state.OfThrottle(sample.Throttle{IOPS: 5000})
	out, err := r.e.Execute(ctx, revertOf(throttle(300)))
	if !errors.Is(err, ErrDrift) || out.Result != state.ResultDrift {
		t.Fatalf("%+v %v", out, err)
	}
	if got := r.b.state[key(vda, policy.KnobThrottle)]; got.Throttle().IOPS != 5000 {
		t.Fatalf("the operator's limit was touched: %+v", got.Throttle())
	}
	o, _ := r.s.Owned(vda, policy.KnobThrottle)
	if o == nil || o.Phase != state.PhaseReleased {
		t.Fatalf("after drift: %+v, want a released record", o)
	}
	// The rule still fires: qtune does not take the knob back.
	_, err = r.e.Execute(ctx, throttle(300))
	refusal(t, err, "drift")
	if got := r.b.state[key(vda, policy.KnobThrottle)]; got.Throttle().IOPS != 5000 {
		t.Fatalf("qtune fought the operator: %+v", got.Throttle())
	}
	// The rule stops firing: the hold ends, the operator's value stays.
	out, err = r.e.Execute(ctx, revertOf(throttle(300)))
	if err != nil || out.Result != state.ResultNoOp || r.b.state[key(vda, policy.KnobThrottle)].Throttle().IOPS != 5000 {
		t.Fatalf("revert after drift: %+v %v", out, err)
	}
	if o, _ := r.s.Owned(vda, policy.KnobThrottle); o != nil {
		t.Fatalf("record kept after the rule stopped: %+v", o)
	}
}

func TestIntentIsWrittenBeforeActingAndFailureIsRecorded(t *testing.T) {
	r := newRig(t, Options{})
	var phase string
	r.b.onApply = func() {
		o, _ := r.s.Owned(vda, policy.KnobThrottle)
		if o != nil {
			phase = o.Phase
		}
	}
	r.b.failNext = errors.New("QEMU said no")
	out, err := r.e.Execute(context.Background(), throttle(300))
	if err == nil || out.Result != state.ResultFailed || !strings.Contains(err.Error(), "QEMU said no") {
		t.Fatalf("%+v %v", out, err)
	}
	if phase != state.PhaseIntent {
		t.Fatalf("phase during apply = %q, want intent", phase)
	}
	o, _ := r.s.Owned(vda, policy.KnobThrottle)
	if o == nil || o.Phase != state.PhaseFailed || o.Original.Throttle() == nil {
		t.Fatalf("store after failure: %+v", o)
	}
	recs, _ := r.s.Records(1)
	if recs[0].Result != state.ResultFailed || !strings.Contains(recs[0].Reason, "QEMU said no") {
		t.Fatalf("log %+v", recs)
	}
}

func TestVerifyMismatch(t *testing.T) {
	r := newRig(t, Options{})
	r.b.lie = true
	out, err := r.e.Execute(context.Background(), throttle(300))
	if err == nil || out.Result != state.ResultVerifyFailed || !strings.Contains(err.Error(), "reads back") {
		t.Fatalf("%+v %v", out, err)
	}
}

func TestPreexistingThrottleIsCombinedAndRestored(t *testing.T) {
	r := newRig(t, Options{})
	ctx := context.Background()
	pre := sample.Throttle{IOPSRead: 500, IOPSWrite: 800, BPSWrite: 100 << 20, Group: "ops"}
	r.b.state[key(vda, policy.KnobThrottle)] = state.OfThrottle(pre)
	out, err := r.e.Execute(ctx, throttle(300))
	if err != nil {
		t.Fatal(err)
	}
	got := *out.After.Throttle()
	if got.IOPSRead != 500 || got.IOPSWrite != 300 || got.BPSWrite != 100<<20 || got.Group != "ops" {
		t.Fatalf("combined %+v", got)
	}
	r.e.Execute(ctx, revertOf(throttle(300)))
	if back := *r.b.state[key(vda, policy.KnobThrottle)].Throttle(); back != pre {
		t.Fatalf("restored %+v, want %+v", back, pre)
	}
	// A total limit cannot be combined with the rule's split.
	r.b.state[key(vda, policy.KnobThrottle)] = state.OfThrottle(sample.Throttle{IOPS: 1000})
	_, err = r.e.Execute(ctx, throttle(300))
	refusal(t, err, "incompatible")
}

func TestL2BudgetIsShared(t *testing.T) {
	r := newRig(t, Options{Limits: Limits{L2Budget: 160 << 20}})
	ctx := context.Background()
	l2 := func(vm string) policy.Decision {
		return policy.Decision{Rule: "l2", VM: vm, Disk: "vda", Knob: policy.KnobL2Cache,
			Action: policy.Action{L2Cache: &policy.L2Spec{Auto: true, Max: 256 << 20}}}
	}
	out, err := r.e.Execute(ctx, l2("a"))
	if err != nil || out.After.L2().Size != 128<<20 {
		t.Fatalf("first disk: %+v %v", out, err)
	}
	out, err = r.e.Execute(ctx, l2("b"))
	if err != nil || out.After.L2().Size != 32<<20 {
		t.Fatalf("second disk gets what is left (32 MiB): %+v %v", out, err)
	}
	_, err = r.e.Execute(ctx, l2("c"))
	refusal(t, err, "budget")
}

func TestStoreLockedAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := state.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.PutOwned(&state.Owned{Target: vda, Knob: policy.KnobThrottle, Phase: state.PhaseApplied})
	if _, err := state.OpenStore(dir); !errors.Is(err, state.ErrStoreLocked) {
		t.Fatalf("second open: %v", err)
	}
	s.Close()
	s, err = state.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if o, _ := s.Owned(vda, policy.KnobThrottle); o == nil {
		t.Fatal("ownership lost across reopen")
	}
}

func TestRepeatedOutcomesAreLoggedOnce(t *testing.T) {
	r := newRig(t, Options{})
	d := throttle(300)
	d.Mode = policy.ModeRecommend
	for i := 0; i < 5; i++ {
		if out, _ := r.e.Execute(context.Background(), d); out.Result != state.ResultRecommended {
			t.Fatalf("step %d: %+v", i, out)
		}
	}
	d.Action.Throttle.IOPSWrite = 200
	r.e.Execute(context.Background(), d)
	recs, _ := r.s.Records(100)
	if len(recs) != 2 || recs[0].After != "iops_wr=300" || recs[1].After != "iops_wr=200" {
		t.Fatalf("records %+v", recs)
	}
}
