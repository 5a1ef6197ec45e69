package tuning

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/clock"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Refusal is a decision a safety limit stopped. Callers branch on Code.
type Refusal struct {
	Code   RefusalCode
	Reason string
}

func (r *Refusal) Error() string { return "refused (" + string(r.Code) + "): " + r.Reason }

// RefusalCode names the safety limit that refused a decision; the
// control socket and the metrics carry it as it is.
type RefusalCode string

const (
	RefuseCooldown      RefusalCode = "cooldown"        // the rule's cooldown since qtune's last change
	RefuseRateLimitVM   RefusalCode = "rate-limit-vm"   // changes to one VM in an hour
	RefuseRateLimitHost RefusalCode = "rate-limit-host" // changes on the host in a minute
	RefuseBounds        RefusalCode = "bounds"          // a value outside what qtune or the hypervisor accepts
	RefuseMinChange     RefusalCode = "min-change"      // a change too small to be worth making
	RefuseBudget        RefusalCode = "budget"          // the host-wide L2 cache budget
	RefuseIncompatible  RefusalCode = "incompatible"    // the disk's state and the rule's cannot be combined
	RefuseUnsupported   RefusalCode = "unsupported"     // a knob or job kind this agent cannot act on
	RefusePassthrough   RefusalCode = "passthrough"     // a change that needs QMP passthrough under libvirt
	RefuseUnsafe        RefusalCode = "unsafe"          // a mode that can lose data or crash QEMU
	RefuseDrift         RefusalCode = "drift"           // someone else holds the knob now
	RefuseMirrorDir     RefusalCode = "mirror-dir"      // a copy into a directory not allowed
	RefuseExists        RefusalCode = "exists"          // a copy's target exists already
	RefuseSpace         RefusalCode = "space"           // not room enough for a job's data
	RefuseFailedBefore  RefusalCode = "failed-before"   // the same job failed a short while ago
	RefuseBusy          RefusalCode = "busy"            // the disk has a block job already
)

// ErrDrift is returned when an owned knob no longer holds what qtune set.
var ErrDrift = errors.New("tuning: knob changed by someone else")

// Limits are the executor's safety limits.
type Limits struct {
	MinIOPS          uint64        // lowest IOPS limit qtune sets (default 10)
	MinBPS           uint64        // lowest bandwidth limit (default 1 MiB/s)
	MinChange        float64       // smallest relative change worth making (default 0.05)
	PerVMPerHour     int           // changes to one VM in an hour (default 12)
	PerHostPerMinute int           // changes on the host in a minute (default 30)
	L2Budget         uint64        // memory for L2 caches qtune sets, all VMs together (default 1 GiB)
	L2Min            uint64        // smallest L2 cache qtune sets (default 1 MiB)
	CallTimeout      time.Duration // deadline of each backend call (default 10s)
}

func (l Limits) withDefaults() Limits {
	def := func(v *uint64, d uint64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MinIOPS, 10)
	def(&l.MinBPS, 1<<20)
	def(&l.L2Budget, 1<<30)
	def(&l.L2Min, 1<<20)
	if l.MinChange == 0 {
		l.MinChange = 0.05
	}
	if l.PerVMPerHour == 0 {
		l.PerVMPerHour = 12
	}
	if l.PerHostPerMinute == 0 {
		l.PerHostPerMinute = 30
	}
	if l.CallTimeout == 0 {
		l.CallTimeout = 10 * time.Second
	}
	return l
}

// Executor applies decisions safely. It is safe for concurrent use.
type Executor struct {
	backend Backend
	store   *state.Store
	clock   clock.Clock
	limits  Limits
	dryRun  bool
	log     hclog.Logger

	jobs JobPlanner // block jobs; nil refuses them

	fail func(step string, k policy.Knob) // failpoint hook: tests only

	identify func(vm string) sample.VMIdentity
	host     string // where changes are made, in the records a VM carries

	mu      sync.Mutex // serialises decisions: limits and budgets are shared
	changes []change
	// last is the latest audited outcome per knob: a firing rule is
	// decided every interval, and the same refusal or recommendation
	// repeated would flood the journal and the action log.
	last map[string]string
}

type change struct {
	vm string
	at time.Time
}

// Options configure an Executor.
type Options struct {
	Limits Limits
	DryRun bool
	Clock  clock.Clock
	Log    hclog.Logger
	// Identify is the identity of a VM as its source sees it now; it is
	// kept in each record, so that a VM that comes back with the same
	// name is known again (or known as another). Nil: unknown.
	Identify func(vm string) sample.VMIdentity
	// Host names this host in the records a VM carries (default: the
	// hostname).
	Host string
}

// NewExecutor returns an executor acting through b and recording in s.
func NewExecutor(b Backend, s *state.Store, o Options) *Executor {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	if o.Identify == nil {
		o.Identify = func(string) sample.VMIdentity { return sample.VMIdentity{} }
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	return &Executor{backend: b, store: s, clock: o.Clock, limits: o.Limits.withDefaults(), dryRun: o.DryRun, log: o.Log,
		fail: armedFailpoint(), identify: o.Identify, host: o.Host}
}

// Outcome is the result of one decision with the knob before and after.
type Outcome struct {
	Result state.Result
	Before state.KnobState
	After  state.KnobState
	Reason string
}

// Execute carries out one decision. Refusals come back as *Refusal,
// drift as ErrDrift, and failures as errors; the outcome is recorded in
// the store and logged in every case.
func (e *Executor) Execute(ctx context.Context, d policy.Decision) (Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := state.Target{VM: d.VM, Disk: d.Disk}
	var out Outcome
	var err error
	switch {
	case isJobKnob(d.Knob):
		out, err = e.planJob(ctx, d)
	case d.Revert:
		out, err = e.revert(ctx, t, d)
	default:
		out, err = e.apply(ctx, t, d)
	}
	if err != nil && out.Reason == "" {
		out.Reason = err.Error()
	}
	e.audit(t, d, out)
	return out, err
}

func (e *Executor) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.limits.CallTimeout)
}

func (e *Executor) read(ctx context.Context, t state.Target, k policy.Knob) (state.KnobState, error) {
	cctx, cancel := e.callCtx(ctx)
	defer cancel()
	s, err := e.backend.Read(cctx, t, k)
	if err != nil {
		return s, fmt.Errorf("read %s of %s: %w", k, t, err)
	}
	return e.recordedRead(t, k, s), nil
}

func (e *Executor) apply(ctx context.Context, t state.Target, d policy.Decision) (Outcome, error) {
	now := e.clock.Now()
	cur, err := e.read(ctx, t, d.Knob)
	if err != nil {
		return Outcome{Result: state.ResultFailed}, err
	}
	owned, err := e.store.Owned(t, d.Knob)
	if err != nil {
		return Outcome{Result: state.ResultFailed, Before: cur}, err
	}
	if owned != nil && owned.Phase == state.PhaseReleased {
		return Outcome{Result: state.ResultRefused, Before: cur}, &Refusal{Code: RefuseDrift, Reason: fmt.Sprintf(
			"someone else changed this knob at %s; qtune leaves it alone until rule %s stops firing",
			owned.LastChange.Format(time.RFC3339), owned.Rule)}
	}
	if owned != nil && (!cur.Equal(owned.Applied) && !cur.Equal(owned.Original) || e.putBack(owned, cur)) {
		return e.drift(ctx, t, d.Knob, owned, cur)
	}
	original := cur
	if owned != nil {
		original = owned.Original
	}
	want, err := e.desired(d, original, cur, t)
	if err != nil {
		return Outcome{Result: state.ResultRefused, Before: cur}, err
	}
	if cur.Equal(want) {
		return e.settleIntent(owned, cur)
	}
	if err := e.checkLimits(t, d, owned, cur, want, now); err != nil {
		return Outcome{Result: state.ResultRefused, Before: cur, After: want}, err
	}
	switch {
	case d.Mode == policy.ModeRecommend:
		return Outcome{Result: state.ResultRecommended, Before: cur, After: want}, nil
	case e.dryRun && !observes(d.Knob):
		return Outcome{Result: state.ResultDryRun, Before: cur, After: want}, nil
	}
	rec := &state.Owned{Target: t, Knob: d.Knob, Rule: d.Rule, Original: original, Applied: want, Phase: state.PhaseIntent,
		Since: now, LastChange: now, Cooldown: d.Cooldown, Persist: d.Persist, VMID: e.identify(t.VM)}
	if owned != nil {
		rec.Since = owned.Since
		if !rec.VMID.Known() {
			rec.VMID = owned.VMID
		}
	}
	if err := e.refuseMigrating(ctx, t.VM); err != nil {
		return Outcome{Result: state.ResultRefused, Before: cur, After: want}, err
	}
	rec.Host, rec.Seq = e.host, e.nextSeq(t.VM)
	// Intent first: if qtune dies between here and the apply, the next
	// start knows what the knob was and what was meant; and a VM that
	// can carry the record carries it before the change, so that wherever
	// it goes the original goes along.
	if err := e.recordInDomain(ctx, t.VM, rec, false); err != nil {
		return Outcome{Result: state.ResultRefused, Before: cur, After: want}, &Refusal{Code: RefuseRecord, Reason: err.Error() + "; nothing changed"}
	}
	if err := e.store.PutOwned(rec); err != nil {
		return Outcome{Result: state.ResultFailed, Before: cur, After: want}, err
	}
	return e.applyAndVerify(ctx, t, d.Knob, rec, cur, want, d.Persist, state.ResultApplied)
}

func (e *Executor) applyAndVerify(ctx context.Context, t state.Target, k policy.Knob, rec *state.Owned, before, want state.KnobState, persist bool, ok state.Result) (Outcome, error) {
	e.failpoint(FailAfterIntent, k)
	cctx, cancel := e.callCtx(ctx)
	err := e.backend.Apply(cctx, t, k, want, persist)
	cancel()
	if err == nil {
		e.failpoint(FailAfterChange, k)
	}
	if err != nil {
		rec.Phase = state.PhaseFailed
		e.store.PutOwned(rec)
		return Outcome{Result: state.ResultFailed, Before: before, After: want}, fmt.Errorf("apply %s to %s: %w", k, t, err)
	}
	got, err := e.verify(ctx, t, k, want)
	if err != nil || !got.Equal(want) {
		rec.Phase = state.PhaseFailed
		e.store.PutOwned(rec)
		if err == nil {
			err = fmt.Errorf("verify %s of %s: reads back %s, want %s", k, t, got, want)
		}
		return Outcome{Result: state.ResultVerifyFailed, Before: before, After: got}, err
	}
	e.failpoint(FailAfterReadBack, k)
	rec.Phase = state.PhaseApplied
	if err := e.store.PutOwned(rec); err != nil {
		return Outcome{Result: state.ResultFailed, Before: before, After: got}, err
	}
	if !observes(k) {
		e.changes = append(e.changes, change{vm: t.VM, at: rec.LastChange})
	}
	return Outcome{Result: ok, Before: before, After: got}, nil
}

// verify reads a knob back after its change. A knob QEMU cannot report
// has nothing to read back but the backend's memory, which a lifecycle
// event (libvirt sends one for qtune's own persist) may have rebuilt
// from the command line meanwhile: the change QEMU accepted is all
// there is to check.
func (e *Executor) verify(ctx context.Context, t state.Target, k policy.Knob, want state.KnobState) (state.KnobState, error) {
	if !ReadsBack(k) {
		return want, nil
	}
	return e.read(ctx, t, k)
}

// settleIntent: the knob already holds what the rule wants. A record a
// crash left between intent and verification, for this very value, is
// what holds it: it becomes applied.
func (e *Executor) settleIntent(owned *state.Owned, cur state.KnobState) (Outcome, error) {
	out := Outcome{Result: state.ResultNoOp, Before: cur, After: cur}
	if owned == nil || owned.Phase == state.PhaseApplied || !cur.Equal(owned.Applied) {
		return out, nil
	}
	owned.Phase = state.PhaseApplied
	out.Reason = "the change was made before the agent stopped: owned as applied"
	return out, e.store.PutOwned(owned)
}

// revert restores the original, unless the knob no longer holds what
// qtune set. Reverts skip cooldowns and rate limits: undoing is always
// allowed, and a revert refused now would never be asked for again.
func (e *Executor) revert(ctx context.Context, t state.Target, d policy.Decision) (Outcome, error) {
	owned, err := e.store.Owned(t, d.Knob)
	if err != nil {
		return Outcome{Result: state.ResultFailed}, err
	}
	if owned == nil {
		return Outcome{Result: state.ResultNoOp, Reason: "qtune does not own this knob"}, nil
	}
	if owned.Phase == state.PhaseReleased {
		// The rule stopped firing: the hold on a knob someone else took
		// ends, and what they set stays.
		return Outcome{Result: state.ResultNoOp, Reason: "released after drift; left as it is"}, e.releaseRecord(ctx, owned)
	}
	cur, err := e.read(ctx, t, d.Knob)
	if err != nil {
		return Outcome{Result: state.ResultFailed}, err
	}
	switch {
	case !ReadsBack(d.Knob):
		// What the backend says is not what QEMU holds: the original is
		// set whatever it says.
		cur = owned.Applied
	case cur.Equal(owned.Original) && !owned.Persist:
		return Outcome{Result: state.ResultReverted, Before: cur, After: cur}, e.releaseRecord(ctx, owned)
	case cur.Equal(owned.Original):
		// Live at the original already (a migration starts the new QEMU
		// from the live XML, which a change by passthrough never
		// reached), but the definition still holds the change: it is
		// restored below, with the live value it already has.
	case !cur.Equal(owned.Applied):
		return e.drift(ctx, t, d.Knob, owned, cur)
	}
	switch {
	case d.Mode == policy.ModeRecommend:
		return Outcome{Result: state.ResultRecommended, Before: cur, After: owned.Original}, nil
	case e.dryRun && !observes(d.Knob):
		return Outcome{Result: state.ResultDryRun, Before: cur, After: owned.Original}, nil
	}
	if err := e.refuseMigrating(ctx, t.VM); err != nil {
		return Outcome{Result: state.ResultRefused, Before: cur, After: owned.Original}, err
	}
	owned.Phase, owned.LastChange = state.PhaseIntent, e.clock.Now()
	if err := e.store.PutOwned(owned); err != nil {
		return Outcome{Result: state.ResultFailed, Before: cur}, err
	}
	out, err := e.applyAndVerify(ctx, t, d.Knob, owned, cur, restoring(owned), owned.Persist, state.ResultReverted)
	if err != nil {
		return out, err
	}
	return out, e.releaseRecord(ctx, owned)
}

// drift: someone else changed a knob qtune owns. qtune lets go of it and
// leaves it as it is.
//
// The record stays, marked released, so that the rule that wanted the knob
// does not take it back on its next evaluation; it goes when that rule
// stops firing (its revert) — whoever changed the knob keeps it.
func (e *Executor) drift(ctx context.Context, t state.Target, k policy.Knob, owned *state.Owned, cur state.KnobState) (Outcome, error) {
	held := *owned
	held.Phase, held.Applied, held.LastChange = state.PhaseReleased, cur, e.clock.Now()
	if err := e.store.PutOwned(&held); err != nil {
		return Outcome{Result: state.ResultFailed, Before: cur}, err
	}
	e.syncDomain(ctx, t.VM, owned.Persist)
	reason := fmt.Sprintf("qtune set %s, it is now %s: left alone and released", owned.Applied, cur)
	return Outcome{Result: state.ResultDrift, Before: owned.Applied, After: cur, Reason: reason}, fmt.Errorf("%s %s: %s: %w", t, k, reason, ErrDrift)
}

func (e *Executor) audit(t state.Target, d policy.Decision, out Outcome) {
	k := t.String() + "/" + string(d.Knob)
	sig := d.Rule + "\x00" + string(out.Result) + "\x00" + out.After.String() + "\x00" + out.Reason
	if e.last == nil {
		e.last = map[string]string{}
	}
	repeat := e.last[k] == sig
	e.last[k] = sig
	if repeat && out.Result != state.ResultApplied && out.Result != state.ResultReverted {
		e.log.Trace("tuning action repeated", "rule", d.Rule, "vm", t.VM, "disk", t.Disk, "result", string(out.Result))
		return
	}
	r := &state.Record{At: e.clock.Now(), Target: t, Knob: d.Knob, Rule: d.Rule, Result: out.Result,
		Reason: out.Reason, Inputs: d.Inputs, Before: out.Before.String(), After: out.After.String()}
	if err := e.store.Append(r); err != nil {
		e.log.Error("action log write failed", "vm", t.VM, "disk", t.Disk, "error", err.Error())
	}
	args := []any{"rule", d.Rule, "vm", t.VM, "disk", t.Disk, "knob", string(d.Knob), "result", string(out.Result),
		"before", r.Before, "after", r.After}
	if len(d.Inputs) > 0 {
		args = append(args, "inputs", policy.FormatInputs(d.Inputs, " "))
	}
	if out.Reason != "" {
		args = append(args, "reason", out.Reason)
	}
	switch out.Result {
	case state.ResultFailed, state.ResultVerifyFailed:
		e.log.Error("tuning action", args...)
	case state.ResultDrift, state.ResultRefused:
		e.log.Warn("tuning action", args...)
	case state.ResultNoOp:
		e.log.Debug("tuning action", args...)
	default:
		e.log.Info("tuning action", args...)
	}
}
