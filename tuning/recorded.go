package tuning

import (
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// A knob QEMU cannot report (QEMU 7.2 has no l2-cache-size in any
// query) has one truth: the value in qtune's durable record of what it
// set. What a backend or a sampler would say instead is rebuilt from
// QEMU's command line on every reconnect, every lifecycle event (the one
// libvirt sends for qtune's own persist included) and every start of
// the agent, and is the value before qtune's change. The executor's
// reads and the agent's samples both take the record's value, so that
// policies, status and the executor see the same figure.

// Recorded returns the value o says its knob holds, when that value is
// the truth: a knob QEMU cannot report, whose change was verified
// (applied) on the QEMU process that runs the VM now (cur). A record in
// any other phase says nothing sure: the change may or may not have
// reached QEMU. A libvirt domain started again or migrated keeps its
// UUID, and so its records, but its new QEMU process starts from the
// definition: a live change is gone unless it was persisted into it.
func Recorded(o state.Owned, cur sample.VMIdentity) (state.KnobState, bool) {
	if ReadsBack(o.Knob) || o.Phase != state.PhaseApplied || !o.Persist && o.VMID.OtherProcess(cur) {
		return state.KnobState{}, false
	}
	kind, err := knobKindOf(o.Knob)
	if err != nil || kind.Recorded == nil {
		return state.KnobState{}, false
	}
	return o.Applied, true
}

// OverlayRecorded puts into sampled disks the recorded value of every
// owned knob QEMU cannot report, and names the knob in the disk's
// Recorded list, so that status can say the figure is a record.
func OverlayRecorded(disks []sample.Disk, owned []state.Owned, identify func(vm string) sample.VMIdentity) {
	by := map[state.Target][]state.Owned{}
	for _, o := range owned {
		by[o.Target] = append(by[o.Target], o)
	}
	for i := range disks {
		d := &disks[i]
		for _, o := range by[state.Target{VM: d.VM, Disk: d.Name}] {
			s, ok := Recorded(o, identify(o.VM))
			if !ok {
				continue
			}
			kind, _ := knobKindOf(o.Knob)
			if kind.Sampled != nil && kind.Sampled(d, s) {
				d.Recorded = append(d.Recorded, string(o.Knob))
			}
		}
	}
}

// recordedRead is what the executor takes as a knob's value: the
// record's, for a knob QEMU cannot report that qtune set and verified;
// otherwise what the backend read.
func (e *Executor) recordedRead(t state.Target, k policy.Knob, read state.KnobState) state.KnobState {
	if ReadsBack(k) {
		return read
	}
	o, err := e.store.Owned(t, k)
	if err != nil || o == nil {
		return read
	}
	rec, ok := Recorded(*o, e.identify(t.VM))
	if !ok {
		return read
	}
	kind, _ := knobKindOf(k)
	return kind.Recorded(read, rec)
}
