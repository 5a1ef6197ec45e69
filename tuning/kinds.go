package tuning

import (
	"context"
	"fmt"
	"sync"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// KnobKind is all the executor and the backends know about one kind of
// knob qtune holds: the state a decision asks for, its safety bounds and
// change size, and how each backend reads and sets it. Each built-in kind
// registers itself from its own file (knob_*.go), beside its policy half
// (policy/kind_*.go); the executor stays the one safety gate and calls
// the hooks only from its guarded path. A kind from elsewhere (a test, a
// site's own knob) registers the same way with RegisterKnob. A block-job
// kind registers in the jobs package instead.
type KnobKind struct {
	Knob policy.Knob
	// Desired is the state a decision asks for, given the knob before
	// qtune touched it (original) and now (cur).
	Desired func(e *Executor, d policy.Decision, original, cur state.KnobState, t state.Target) (state.KnobState, error)
	// Bounds refuses a wanted state outside the executor's limits.
	Bounds func(e *Executor, want state.KnobState) error
	// Change is the relative size of a change (for the minimum change);
	// nil counts any change as whole.
	Change func(a, b state.KnobState) float64

	// QMPRead and QMPApply read and set the knob over QMP, on a plain
	// QEMU or, through passthrough, on a libvirt domain.
	QMPRead  func(ctx context.Context, r *VMHandle, d sample.Disk) (state.KnobState, error)
	QMPApply func(ctx context.Context, r *VMHandle, d sample.Disk, s state.KnobState) error
	// LibvirtRead and LibvirtApply, when set, use libvirt's own API
	// instead of passthrough.
	LibvirtRead  func(ctx context.Context, b *LibvirtBackend, t state.Target) (state.KnobState, error)
	LibvirtApply func(ctx context.Context, b *LibvirtBackend, t state.Target, s state.KnobState, persist bool) error
	// Persist edits a disk's <driver> element of the persistent
	// definition so that a passthrough change outlives the domain's
	// restart; nil leaves the definition as it is. A note is logged as a
	// warning: the edit did something the SRE should know of.
	Persist func(driver string, s state.KnobState) (edited, note string, err error)
	// Defined adds to a state read from a libvirt domain what the disk's
	// <driver> element of the persistent definition holds of the knob,
	// so that the revert of a persisted change can put it back.
	Defined func(driver string, s state.KnobState) state.KnobState
	// Restoring is the state a revert sets, from the record's original
	// (nil: the original as it is).
	Restoring func(original state.KnobState) state.KnobState
	// NotReadBack: QEMU cannot report the knob's value (QEMU 7.2 reports
	// no l2-cache-size), so what the backend says is only what this
	// process set or the command line: the owned record is the truth,
	// and a revert always sets the original.
	NotReadBack bool
	// For a NotReadBack kind, Recorded is the knob's value given what
	// the backend read and the applied record (the record's setting,
	// the read's facts), and Sampled puts the record's setting into a
	// sampled disk (false when the disk has no such figure). See
	// recorded.go.
	Recorded func(read, rec state.KnobState) state.KnobState
	Sampled  func(d *sample.Disk, rec state.KnobState) bool
	// Observes: the knob makes a VM observable and tunes nothing (latency
	// histograms). It is set in dry-run too, and is neither refused by
	// nor counted in cooldowns, the minimum change and the rate limits.
	Observes bool
	// PutBackIsDrift: nobody but qtune sets the knob back to its
	// original on a running QEMU, so an applied knob found there on the
	// same process was changed by someone else (drift), not lost with a
	// QEMU restart, and is not set again.
	PutBackIsDrift bool
}

var knobKinds struct {
	sync.RWMutex
	by map[policy.Knob]KnobKind
}

// RegisterKnob adds a knob kind; twice is a programming error.
func RegisterKnob(k KnobKind) {
	if k.Knob == "" || k.Desired == nil || k.QMPRead == nil || k.QMPApply == nil {
		panic(fmt.Sprintf("tuning: knob kind %q needs a name, desired and QMP read/apply", k.Knob))
	}
	if k.NotReadBack && k.Recorded == nil {
		panic(fmt.Sprintf("tuning: knob kind %q cannot be read back and needs recorded", k.Knob))
	}
	knobKinds.Lock()
	defer knobKinds.Unlock()
	if knobKinds.by == nil {
		knobKinds.by = map[policy.Knob]KnobKind{}
	}
	if _, dup := knobKinds.by[k.Knob]; dup {
		panic(fmt.Sprintf("tuning: knob kind %q registered twice", k.Knob))
	}
	knobKinds.by[k.Knob] = k
}

// UnregisterKnob removes a kind; tests that register one use it to
// clean up.
func UnregisterKnob(k policy.Knob) {
	knobKinds.Lock()
	defer knobKinds.Unlock()
	delete(knobKinds.by, k)
}

// ReadsBack reports whether the hypervisor can report k's value.
func ReadsBack(k policy.Knob) bool {
	kind, err := knobKindOf(k)
	return err != nil || !kind.NotReadBack
}

// Restoring is the state the revert of o sets: its original, as the
// knob's kind completes it.
func restoring(o *state.Owned) state.KnobState {
	kind, err := knobKindOf(o.Knob)
	if err != nil || kind.Restoring == nil {
		return o.Original
	}
	return kind.Restoring(o.Original)
}

// observes reports whether k only makes a VM observable (see KnobKind).
func observes(k policy.Knob) bool {
	kind, err := knobKindOf(k)
	return err == nil && kind.Observes
}

// putBack reports whether an owned knob found at its original is drift:
// its kind says nobody but qtune puts it back, its record is applied,
// and its VM runs on the QEMU process the record was taken on.
func (e *Executor) putBack(o *state.Owned, cur state.KnobState) bool {
	kind, err := knobKindOf(o.Knob)
	return err == nil && kind.PutBackIsDrift && o.Phase == state.PhaseApplied && cur.Equal(o.Original) &&
		!cur.Equal(o.Applied) && !o.VMID.OtherProcess(e.identify(o.VM))
}

// knobKindOf returns the registered kind of k, or a refusal that names
// it as unsupported.
func knobKindOf(k policy.Knob) (KnobKind, error) {
	knobKinds.RLock()
	defer knobKinds.RUnlock()
	kind, ok := knobKinds.by[k]
	if !ok {
		return KnobKind{}, &Refusal{Code: RefuseUnsupported, Reason: fmt.Sprintf("knob %q", k)}
	}
	return kind, nil
}
