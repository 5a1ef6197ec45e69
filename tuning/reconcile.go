package tuning

import (
	"context"
	"fmt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// Reconcile checks one owned knob against what the backend reports, once
// its VM is reachable (after a start, or when it comes back): a record
// a crash left in the intent or failed phase is resolved by reading the
// knob (what qtune meant is in force: applied; the original: nothing was
// changed, the record goes; anything else: someone else's, drift), and
// an applied record whose knob holds neither value is drift. A knob
// back at its original (the VM restarted) stays owned: the rule's next
// decision applies it again or its revert releases it.
func (e *Executor) Reconcile(ctx context.Context, o state.Owned) (Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.Phase == state.PhaseReleased {
		return Outcome{Result: state.ResultNoOp}, nil
	}
	cur, err := e.read(ctx, o.Target, o.Knob)
	if err != nil {
		return Outcome{Result: state.ResultFailed}, err
	}
	d := policy.Decision{Rule: o.Rule, VM: o.VM, Disk: o.Disk, Knob: o.Knob}
	if !ReadsBack(o.Knob) {
		return e.reconcileUnreadable(ctx, o, d)
	}
	var out Outcome
	switch {
	case o.Phase == state.PhaseApplied && (cur.Equal(o.Applied) || cur.Equal(o.Original)) && !e.putBack(&o, cur):
		return Outcome{Result: state.ResultNoOp, Before: cur, After: cur}, nil
	case o.Phase != state.PhaseApplied && cur.Equal(o.Applied):
		o.Phase = state.PhaseApplied
		out = Outcome{Result: state.ResultResolved, Before: cur, After: cur, Reason: "the change was made before the agent stopped: owned as applied"}
		err = e.store.PutOwned(&o)
	case o.Phase != state.PhaseApplied && cur.Equal(o.Original):
		out = Outcome{Result: state.ResultResolved, Before: cur, After: cur, Reason: "the change never reached the knob: nothing to restore"}
		err = e.releaseRecord(ctx, &o)
	default:
		out, err = e.drift(ctx, o.Target, o.Knob, &o, cur)
	}
	e.audit(o.Target, d, out)
	return out, err
}

// reconcileUnreadable: a knob QEMU cannot report. An applied record is
// the truth; whether a change a crash interrupted reached QEMU cannot be
// known, so the original is set again, and the record goes (a rule
// still firing applies its value anew).
func (e *Executor) reconcileUnreadable(ctx context.Context, o state.Owned, d policy.Decision) (Outcome, error) {
	if o.Phase == state.PhaseApplied || e.dryRun {
		return Outcome{Result: state.ResultNoOp, Before: o.Applied, After: o.Applied}, nil
	}
	out, err := e.applyAndVerify(ctx, o.Target, o.Knob, &o, o.Applied, restoring(&o), o.Persist, state.ResultResolved)
	if err == nil {
		out.Reason = "interrupted change of a knob QEMU cannot report: the original set again"
		err = e.releaseRecord(ctx, &o)
	}
	e.audit(o.Target, d, out)
	return out, err
}

// Forget drops the record of a knob whose VM is gone, without touching
// anything: a live change ends with the QEMU process that held it.
func (e *Executor) Forget(o state.Owned, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.store.Release(o.Target, o.Knob); err != nil {
		return fmt.Errorf("forget %s of %s: %w", o.Knob, o.Target, err)
	}
	e.audit(o.Target, policy.Decision{Rule: o.Rule, VM: o.VM, Disk: o.Disk, Knob: o.Knob},
		Outcome{Result: state.ResultForgotten, Before: o.Applied, Reason: reason})
	return nil
}

// AdoptIdentity gives a record that has no known identity (written before
// qtune kept them, or while its process could not be read) the identity
// its VM has now: from here on a VM that comes back under the same name
// is told apart.
func (e *Executor) AdoptIdentity(o state.Owned, id sample.VMIdentity) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, err := e.store.Owned(o.Target, o.Knob)
	if err != nil || cur == nil || cur.VMID.Known() {
		return err
	}
	cur.VMID = id
	if err := e.store.PutOwned(cur); err != nil {
		return fmt.Errorf("adopt identity of %s: %w", o.VM, err)
	}
	return nil
}
