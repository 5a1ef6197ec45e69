package tuning

import (
	"context"
	"fmt"
	"sync"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// knobKind is all the executor and the backends know about one kind of
// knob qtune holds: the state a decision asks for, its safety bounds and
// change size, and how each backend reads and sets it. Each built-in kind
// registers itself from its own file (knob_*.go), beside its policy half
// (policy/kind_*.go); the executor stays the one safety gate and calls
// the hooks only from its guarded path. A block-job kind registers in
// jobKinds instead (jobs.go).
type knobKind struct {
	knob policy.Knob
	// desired is the state a decision asks for, given the knob before
	// qtune touched it (original) and now (cur).
	desired func(e *Executor, d policy.Decision, original, cur KnobState, t Target) (KnobState, error)
	// bounds refuses a wanted state outside the executor's limits.
	bounds func(e *Executor, want KnobState) error
	// change is the relative size of a change (for the minimum change);
	// nil counts any change as whole.
	change func(a, b KnobState) float64

	// qmpRead and qmpApply read and set the knob over QMP, on a plain
	// QEMU or, through passthrough, on a libvirt domain.
	qmpRead  func(ctx context.Context, r *reopener, d sample.Disk) (KnobState, error)
	qmpApply func(ctx context.Context, r *reopener, d sample.Disk, s KnobState) error
	// libvirtRead and libvirtApply, when set, use libvirt's own API
	// instead of passthrough.
	libvirtRead  func(ctx context.Context, b *LibvirtBackend, t Target) (KnobState, error)
	libvirtApply func(ctx context.Context, b *LibvirtBackend, t Target, s KnobState, persist bool) error
	// persist edits a disk's <driver> element of the persistent
	// definition so that a passthrough change outlives the domain's
	// restart; nil leaves the definition as it is. A note is logged as a
	// warning: the edit did something the SRE should know of.
	persist func(driver string, s KnobState) (edited, note string, err error)
	// defined adds to a state read from a libvirt domain what the disk's
	// <driver> element of the persistent definition holds of the knob,
	// so that the revert of a persisted change can put it back.
	defined func(driver string, s KnobState) KnobState
	// restoring is the state a revert sets, from the record's original
	// (nil: the original as it is).
	restoring func(original KnobState) KnobState
	// notReadBack: QEMU cannot report the knob's value (QEMU 7.2 reports
	// no l2-cache-size), so what the backend says is only what this
	// process set or the command line: the owned record is the truth,
	// and a revert always sets the original.
	notReadBack bool
	// For a notReadBack kind, recorded is the knob's value given what
	// the backend read and the applied record (the record's setting,
	// the read's facts), and sampled puts the record's setting into a
	// sampled disk (false when the disk has no such figure). See
	// recorded.go.
	recorded func(read, rec KnobState) KnobState
	sampled  func(d *sample.Disk, rec KnobState) bool
	// observes: the knob makes a VM observable and tunes nothing (latency
	// histograms). It is set in dry-run too, and is neither refused by
	// nor counted in cooldowns, the minimum change and the rate limits.
	observes bool
	// putBackIsDrift: nobody but qtune sets the knob back to its
	// original on a running QEMU, so an applied knob found there on the
	// same process was changed by someone else (drift), not lost with a
	// QEMU restart, and is not set again.
	putBackIsDrift bool
}

var knobKinds struct {
	sync.RWMutex
	by map[policy.Knob]knobKind
}

// registerKnob adds a knob kind; twice is a programming error.
func registerKnob(k knobKind) {
	if k.knob == "" || k.desired == nil || k.qmpRead == nil || k.qmpApply == nil {
		panic(fmt.Sprintf("tuning: knob kind %q needs a name, desired and QMP read/apply", k.knob))
	}
	if k.notReadBack && k.recorded == nil {
		panic(fmt.Sprintf("tuning: knob kind %q cannot be read back and needs recorded", k.knob))
	}
	knobKinds.Lock()
	defer knobKinds.Unlock()
	if knobKinds.by == nil {
		knobKinds.by = map[policy.Knob]knobKind{}
	}
	if _, dup := knobKinds.by[k.knob]; dup {
		panic(fmt.Sprintf("tuning: knob kind %q registered twice", k.knob))
	}
	knobKinds.by[k.knob] = k
}

func unregisterKnob(k policy.Knob) {
	knobKinds.Lock()
	defer knobKinds.Unlock()
	delete(knobKinds.by, k)
}

// ReadsBack reports whether the hypervisor can report k's value.
func ReadsBack(k policy.Knob) bool {
	kind, err := knobKindOf(k)
	return err != nil || !kind.notReadBack
}

// restoring is the state the revert of o sets: its original, as the
// knob's kind completes it.
func restoring(o *Owned) KnobState {
	kind, err := knobKindOf(o.Knob)
	if err != nil || kind.restoring == nil {
		return o.Original
	}
	return kind.restoring(o.Original)
}

// observes reports whether k only makes a VM observable (see knobKind).
func observes(k policy.Knob) bool {
	kind, err := knobKindOf(k)
	return err == nil && kind.observes
}

// putBack reports whether an owned knob found at its original is drift:
// its kind says nobody but qtune puts it back, its record is applied,
// and its VM runs on the QEMU process the record was taken on.
func (e *Executor) putBack(o *Owned, cur KnobState) bool {
	kind, err := knobKindOf(o.Knob)
	return err == nil && kind.putBackIsDrift && o.Phase == PhaseApplied && cur.Equal(o.Original) &&
		!cur.Equal(o.Applied) && !o.VMID.OtherProcess(e.identify(o.VM))
}

// knobKindOf returns the registered kind of k, or a refusal that names
// it as unsupported.
func knobKindOf(k policy.Knob) (knobKind, error) {
	knobKinds.RLock()
	defer knobKinds.RUnlock()
	kind, ok := knobKinds.by[k]
	if !ok {
		return knobKind{}, &Refusal{Code: "unsupported", Reason: fmt.Sprintf("knob %q", k)}
	}
	return kind, nil
}
