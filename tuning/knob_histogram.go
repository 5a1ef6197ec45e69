package tuning

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
)

// HistogramState is a disk's QEMU latency histograms: the boundaries
// (ns) of its read, write and flush histogram, nil for a kind that has
// none (a pointer, because a histogram with no boundaries, one bin, is
// still a histogram). Off has none of the three.
type HistogramState struct {
	On    bool      `json:"on"`
	Read  *[]uint64 `json:"rd,omitempty"`
	Write *[]uint64 `json:"wr,omitempty"`
	Flush *[]uint64 `json:"flush,omitempty"`
}

// Histogram decodes the state of a histogram knob; a state of another
// kind reads as off. The value is kept as state.Raw, {"raw": {...}}:
// histograms compare by their JSON, which one struct always marshals
// the same way, so the kind needs no key of its own.
func Histogram(s state.KnobState) HistogramState {
	var h HistogramState
	if raw := s.RawValue(); raw != nil {
		json.Unmarshal(raw, &h)
	}
	return h
}

// The histogram knob: a disk's latency histograms, set with
// block-latency-histogram-set (under libvirt through passthrough, which
// libvirt cannot do itself). The agent drives it from the metrics the
// rules in force read; no rule sets it by hand.
//
// A disk that has a histogram when qtune first looks is someone else's
// (another tool, an operator) and is never owned: the desired state is
// then what it holds, a no-op that writes no record. qtune owns only
// what it turned on, and its revert turns exactly that off again.
//
// It only makes a disk observable, so it is set in dry-run too and is
// neither held back by nor counted in the change rate limits (at 400
// disks it would use up a host's changes for a quarter of an hour). No
// one but qtune puts it back to off on a running QEMU by accident: a
// histogram qtune turned on found gone on the same QEMU process was
// removed by someone else, and is let go (drift), not turned on again.
func init() {
	RegisterKnob(KnobKind{Knob: policy.KnobHistogram, Observes: true, PutBackIsDrift: true,
		Desired:  desiredHistogram,
		QMPRead:  qmpReadHistogram,
		QMPApply: qmpApplyHistogram,
	})
}

func desiredHistogram(_ *Executor, d policy.Decision, original, cur state.KnobState, _ state.Target) (state.KnobState, error) {
	if Histogram(original).On {
		return cur, nil // someone else's: left as it is, never owned
	}
	spec, _ := d.Action.Other.(*policy.HistogramSpec)
	if spec == nil || len(spec.Boundaries) == 0 {
		return state.KnobState{}, &Refusal{Code: RefuseBounds, Reason: "histogram decision without boundaries"}
	}
	for i := 1; i < len(spec.Boundaries); i++ {
		if spec.Boundaries[i] <= spec.Boundaries[i-1] {
			// QEMU refuses them too, but only when the set is sent.
			return state.KnobState{}, &Refusal{Code: RefuseBounds, Reason: fmt.Sprintf("histogram boundaries %v are not strictly increasing", spec.Boundaries)}
		}
	}
	b := slices.Clone(spec.Boundaries)
	return state.Raw(HistogramState{On: true, Read: &b, Write: &b, Flush: &b})
}

// histogramOf is the state query-blockstats reports for one disk.
func histogramOf(st qmp.BlockDeviceStats) HistogramState {
	bounds := func(h *qmp.LatencyHistogram) *[]uint64 {
		if h == nil {
			return nil
		}
		b := append([]uint64{}, h.Boundaries...)
		return &b
	}
	h := HistogramState{Read: bounds(st.RdLatencyHist), Write: bounds(st.WrLatencyHist), Flush: bounds(st.FlushLatencyHist)}
	h.On = h.Read != nil || h.Write != nil || h.Flush != nil
	return h
}

func qmpReadHistogram(ctx context.Context, r *VMHandle, d sample.Disk) (state.KnobState, error) {
	stats, err := r.block.QueryBlockstats(ctx, false)
	if err != nil {
		return state.KnobState{}, err
	}
	for _, st := range stats {
		if d.QOMPath != "" && st.QDev == d.QOMPath || d.QOMPath == "" && st.Device == d.Name {
			return state.Raw(histogramOf(st.Stats))
		}
	}
	return state.KnobState{}, fmt.Errorf("%s/%s: disk not in query-blockstats", r.vm, d.Name)
}

// qmpApplyHistogram sets a state whole: off removes every histogram of
// the disk; on sets each kind it has, after removing them all when it
// leaves a kind out (a set with only some kinds keeps the others).
func qmpApplyHistogram(ctx context.Context, r *VMHandle, d sample.Disk, s state.KnobState) error {
	if s.RawValue() == nil {
		return errNothingToApply(policy.KnobHistogram)
	}
	h := Histogram(s)
	id := qmp.DiskID{QOMPath: d.QOMPath, Device: legacyDevice(d)}
	if !h.On || h.Read == nil || h.Write == nil || h.Flush == nil {
		if err := r.block.SetLatencyHistogram(ctx, id, qmp.HistogramBoundaries{}); err != nil || !h.On {
			return err
		}
	}
	deref := func(p *[]uint64) []uint64 {
		if p == nil {
			return nil
		}
		return append([]uint64{}, *p...)
	}
	set := qmp.HistogramBoundaries{Read: deref(h.Read), Write: deref(h.Write), Flush: deref(h.Flush)}
	if slices.Equal(set.Read, set.Write) && slices.Equal(set.Read, set.Flush) && set.Read != nil {
		set = qmp.HistogramBoundaries{All: set.Read} // the one call an operator would write
	}
	return r.block.SetLatencyHistogram(ctx, id, set)
}
