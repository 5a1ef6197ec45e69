package tuning

import (
	"context"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

// The l2_cache knob: a qcow2 node's l2-cache-size, changed live by
// blockdev-reopen (under libvirt through passthrough), within a
// host-wide budget.
func init() {
	registerKnob(knobKind{knob: policy.KnobL2Cache, notReadBack: true,
		desired: func(e *Executor, d policy.Decision, _, cur KnobState, t Target) (KnobState, error) {
			return e.desiredL2(d, cur, t)
		},
		change: func(a, b KnobState) float64 {
			if a.L2 == nil || b.L2 == nil {
				return 1
			}
			return rel(a.L2.Size, b.L2.Size)
		},
		qmpRead: func(_ context.Context, _ *reopener, d sample.Disk) (KnobState, error) {
			if d.Format != "qcow2" {
				return KnobState{}, nil
			}
			return KnobState{L2: &L2State{Size: d.L2CacheSize, Needed: d.L2Needed()}}, nil
		},
		qmpApply: func(ctx context.Context, r *reopener, d sample.Disk, s KnobState) error {
			if s.L2 == nil {
				return errNothingToApply(policy.KnobL2Cache)
			}
			return r.reopen(ctx, d.Node, map[string]any{"l2-cache-size": s.L2.Size})
		},
		persist: func(driver string, s KnobState) (string, error) {
			return setMetadataCache(driver, s.L2.Size), nil
		},
		recorded: func(read, rec KnobState) KnobState {
			if rec.L2 == nil || read.L2 == nil {
				return rec
			}
			l2 := *rec.L2
			l2.Needed = read.L2.Needed // a fact of the image, not part of the setting
			return KnobState{L2: &l2}
		},
		sampled: func(d *sample.Disk, rec KnobState) bool {
			if rec.L2 == nil || d.Format != "qcow2" {
				return false
			}
			d.L2CacheSize = rec.L2.Size
			return true
		},
	})
}
