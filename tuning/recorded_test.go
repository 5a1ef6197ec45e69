package tuning

import (
	"context"
	"slices"
	"testing"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// A sampled disk takes the figure of an applied record of a knob QEMU
// cannot report, and says so; a record in any other phase, a knob QEMU
// reports, a disk without the figure and a live change made on a QEMU
// process the domain no longer runs in keep what was sampled.
func TestOverlayRecorded(t *testing.T) {
	qcow := func(name string) sample.Disk {
		return sample.Disk{VM: "vm1", Name: name, Format: "qcow2", L2CacheSize: 1 << 20}
	}
	disks := []sample.Disk{qcow("vda"), qcow("vdb"), qcow("vdc"), {VM: "vm1", Name: "vdd", Format: "raw"}, qcow("vde"),
		qcow("vdf"), qcow("vdg"), qcow("vdh")}
	proc := func(pid int) sample.VMIdentity {
		return sample.VMIdentity{UUID: "u1", PID: pid, Boot: "b", StartTicks: 7}
	}
	own := func(disk string, k policy.Knob, phase string, s state.KnobState) state.Owned {
		return state.Owned{Target: state.Target{VM: "vm1", Disk: disk}, Knob: k, Phase: phase, Applied: s, VMID: proc(10)}
	}
	restarted, persisted, unknown := own("vdf", policy.KnobL2Cache, state.PhaseApplied, l2Size(8<<20)),
		own("vdg", policy.KnobL2Cache, state.PhaseApplied, l2Size(8<<20)), own("vdh", policy.KnobL2Cache, state.PhaseApplied, l2Size(8<<20))
	restarted.VMID, persisted.VMID, persisted.Persist, unknown.VMID = proc(9), proc(9), true, sample.VMIdentity{UUID: "u1"}
	OverlayRecorded(disks, []state.Owned{
		own("vda", policy.KnobL2Cache, state.PhaseApplied, l2Size(8<<20)),
		own("vda", policy.KnobThrottle, state.PhaseApplied, state.OfThrottle(sample.Throttle{IOPSWrite: 10})),
		own("vdb", policy.KnobL2Cache, state.PhaseIntent, l2Size(8<<20)),
		own("vdc", policy.KnobL2Cache, state.PhaseFailed, l2Size(8<<20)),
		own("vdd", policy.KnobL2Cache, state.PhaseApplied, l2Size(8<<20)),
		restarted, persisted, unknown,
	}, func(string) sample.VMIdentity { return proc(10) })
	want := []struct {
		size     uint64
		recorded bool
	}{{8 << 20, true}, {1 << 20, false}, {1 << 20, false}, {0, false}, {1 << 20, false},
		{1 << 20, false}, {8 << 20, true}, {8 << 20, true}}
	for i, d := range disks {
		rec := slices.Equal(d.Recorded, []string{string(policy.KnobL2Cache)})
		if d.L2CacheSize != want[i].size || rec != want[i].recorded || (!rec && len(d.Recorded) > 0) {
			t.Errorf("%s: L2 %d recorded %v; want %d, %v", d.Name, d.L2CacheSize, d.Recorded, want[i].size, want[i].recorded)
		}
	}
}

// forgetful is the libvirt backend around qtune's own persist: the
// lifecycle event it triggers drops the domain's options, so the next
// read of a size QEMU cannot report is the command line's again.
type forgetful struct{ *fakeBackend }

func (f forgetful) Apply(ctx context.Context, t state.Target, k policy.Knob, s state.KnobState, persist bool) error {
	err := f.fakeBackend.Apply(ctx, t, k, s, persist)
	delete(f.state, key(t, k))
	return err
}

// A change of a knob QEMU cannot report is verified by QEMU accepting
// it, not by the backend's memory; afterwards the executor's reads are
// the record's, so the same decision again changes nothing and a revert
// starts from what qtune set.
func TestUnreadableKnobReadsTheRecord(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, Options{})
	r.e.backend = forgetful{r.b}
	d := policy.Decision{Rule: "l2", VM: "vm1", Disk: "vda", Knob: policy.KnobL2Cache, Mode: policy.ModeEnforce,
		Action: policy.Action{L2Cache: &policy.L2Spec{Size: 8 << 20}}}
	out, err := r.e.Execute(ctx, d)
	if err != nil || out.Result != state.ResultApplied {
		t.Fatalf("%+v %v; want applied", out, err)
	}
	o, _ := r.s.Owned(vda, policy.KnobL2Cache)
	if o == nil || o.Phase != state.PhaseApplied || o.Applied.L2().Size != 8<<20 {
		t.Fatalf("record %+v; want 8 MiB applied", o)
	}
	if out, err := r.e.Execute(ctx, d); err != nil || out.Result != state.ResultNoOp || out.Before.L2().Size != 8<<20 || out.Before.L2().Needed != 128<<20 {
		t.Fatalf("again: %+v %v; want a no-op from the record's 8 MiB, the image's need kept", out, err)
	}
	d.Revert, d.Action = true, policy.Action{}
	if out, err := r.e.Execute(ctx, d); err != nil || out.Result != state.ResultReverted || out.Before.L2().Size != 8<<20 || r.b.applies != 2 {
		t.Fatalf("revert: %+v %v, %d applies; want reverted from 8 MiB with one more apply", out, err, r.b.applies)
	}
}
