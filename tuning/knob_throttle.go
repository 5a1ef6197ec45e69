package tuning

import (
	"context"
	"math"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
)

// The throttle knob: QEMU's I/O limits. Under libvirt it goes through
// libvirt's own API, so that the domain XML stays true.
func init() {
	RegisterKnob(KnobKind{Knob: policy.KnobThrottle,
		Desired: func(_ *Executor, d policy.Decision, original, _ state.KnobState, _ state.Target) (state.KnobState, error) {
			if d.Action.Throttle == nil {
				return state.KnobState{}, &Refusal{Code: RefuseBounds, Reason: "throttle decision without a throttle"}
			}
			var pre sample.Throttle
			if original.Throttle() != nil {
				pre = *original.Throttle()
			}
			t, err := CombineThrottle(pre, *d.Action.Throttle)
			if err != nil {
				return state.KnobState{}, err
			}
			return state.OfThrottle(t), nil
		},
		Bounds: func(e *Executor, want state.KnobState) error {
			if want.Throttle() == nil {
				return nil
			}
			return e.throttleBounds(*want.Throttle())
		},
		Change:   throttleChange,
		QMPRead:  qmpReadThrottle,
		QMPApply: qmpApplyThrottle,
		LibvirtRead: func(ctx context.Context, b *LibvirtBackend, t state.Target) (state.KnobState, error) {
			return b.readThrottle(ctx, t)
		},
		LibvirtApply: func(ctx context.Context, b *LibvirtBackend, t state.Target, s state.KnobState, persist bool) error {
			if s.Throttle() == nil {
				return errNothingToApply(policy.KnobThrottle)
			}
			// The read-back that verifies this must ask libvirt.
			b.ThrottlesChanged(t.VM)
			return b.v.SetBlockIOTune(ctx, t.VM, t.Disk, *s.Throttle(), persist)
		},
	})
}

func qmpReadThrottle(_ context.Context, _ *VMHandle, d sample.Disk) (state.KnobState, error) {
	t := d.Throttle
	// QEMU puts a throttled disk without a group in a group of its own
	// named after the device: that is no group at all.
	if t.Group == d.QOMPath || t.Group == d.Name {
		t.Group = ""
	}
	return state.OfThrottle(t), nil
}

func qmpApplyThrottle(ctx context.Context, r *VMHandle, d sample.Disk, s state.KnobState) error {
	if s.Throttle() == nil {
		return errNothingToApply(policy.KnobThrottle)
	}
	return r.block.SetIOThrottle(ctx, qmp.DiskID{QOMPath: d.QOMPath, Device: legacyDevice(d)}, *s.Throttle())
}

// throttleChange is the largest relative change of a limit (1 for a
// change of group).
func throttleChange(a, b state.KnobState) float64 {
	if a.Throttle() == nil || b.Throttle() == nil {
		return 1
	}
	x, y := *a.Throttle(), *b.Throttle()
	worst := 0.0
	for _, p := range [][2]uint64{{x.IOPS, y.IOPS}, {x.IOPSRead, y.IOPSRead}, {x.IOPSWrite, y.IOPSWrite}, {x.BPS, y.BPS}, {x.BPSRead, y.BPSRead}, {x.BPSWrite, y.BPSWrite}} {
		worst = math.Max(worst, rel(p[0], p[1]))
	}
	if x.Group != y.Group {
		worst = 1
	}
	return worst
}
