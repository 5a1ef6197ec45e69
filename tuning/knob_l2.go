package tuning

import (
	"context"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// The l2_cache knob: a qcow2 node's l2-cache-size, changed live by
// blockdev-reopen (under libvirt through passthrough), within a
// host-wide budget.
func init() {
	RegisterKnob(KnobKind{Knob: policy.KnobL2Cache, NotReadBack: true,
		Desired: func(e *Executor, d policy.Decision, _, cur state.KnobState, t state.Target) (state.KnobState, error) {
			return e.desiredL2(d, cur, t)
		},
		Change: func(a, b state.KnobState) float64 {
			if a.L2() == nil || b.L2() == nil {
				return 1
			}
			return rel(a.L2().Size, b.L2().Size)
		},
		QMPRead: func(_ context.Context, r *VMHandle, d sample.Disk) (state.KnobState, error) {
			if d.Format != "qcow2" {
				return state.KnobState{}, nil
			}
			limit, _ := r.NodeOption(d.Node, "cache-size")
			return state.OfL2(state.L2State{Size: d.L2CacheSize, Needed: d.L2Needed(), Limit: limit}), nil
		},
		QMPApply: func(ctx context.Context, r *VMHandle, d sample.Disk, s state.KnobState) error {
			if s.L2() == nil {
				return errNothingToApply(policy.KnobL2Cache)
			}
			return r.Reopen(ctx, d.Node, map[string]any{"l2-cache-size": s.L2().Size})
		},
		Persist:   persistL2,
		Defined:   definedL2,
		Restoring: restoringL2,
		Recorded: func(read, rec state.KnobState) state.KnobState {
			if rec.L2() == nil || read.L2() == nil {
				return rec
			}
			l2 := *rec.L2()
			// Facts of the image, the node and the definition, not part of the setting.
			l2.Needed, l2.Limit, l2.Defined = read.L2().Needed, read.L2().Limit, read.L2().Defined
			return state.OfL2(l2)
		},
		Sampled: func(d *sample.Disk, rec state.KnobState) bool {
			if rec.L2() == nil || d.Format != "qcow2" {
				return false
			}
			d.L2CacheSize = rec.L2().Size
			return true
		},
	})
}

// persistL2 writes an L2 cache size into the definition as
// <metadata_cache><max_size>, which libvirt passes to QEMU as cache-size.
// A revert puts back what the definition held before (Defined): writing
// the original effective size instead would give the next QEMU process
// a cache-size cap the operator never set, and every later larger L2
// change would fail. A record from before qtune kept Defined says
// nothing of it: the element goes, so that no such cap is invented.
func persistL2(driver string, s state.KnobState) (string, string, error) {
	if s.L2() == nil {
		return "", "", errNothingToApply(policy.KnobL2Cache)
	}
	switch def := s.L2().Defined; {
	case def == nil:
		return setMetadataCache(driver, s.L2().Size), "", nil
	case def.Unknown:
		return setMetadataCache(driver, 0), "what the definition held before qtune's change was not recorded: " +
			"its <metadata_cache> is removed (QEMU's default cache size on the next start)", nil
	}
	return restoreMetadataCache(driver, s.L2().Defined.MetadataCache), "", nil
}

// definedL2 notes the <metadata_cache> element the definition holds.
func definedL2(driver string, s state.KnobState) state.KnobState {
	if s.L2() == nil {
		return s
	}
	l2 := *s.L2()
	l2.Defined = &state.L2Definition{MetadataCache: metaCache.FindString(driver)}
	return state.OfL2(l2)
}

// restoringL2: a persisted change recorded before qtune kept what the
// definition held is reverted as unknown (see persistL2).
func restoringL2(o state.KnobState) state.KnobState {
	if o.L2() == nil || o.L2().Defined != nil {
		return o
	}
	l2 := *o.L2()
	l2.Defined = &state.L2Definition{Unknown: true}
	return state.OfL2(l2)
}
