package policy

import (
	"math"
	"sort"

	"github.com/qtune/qtune/internal/sample"
)

// resolveConflicts keeps one decision per knob of a disk. The rule with
// the higher priority wins. At equal priority the most restrictive
// throttle wins (the one that lets the fewest operations, then the fewest
// bytes, through); for other knobs the rule whose name sorts first. A
// revert is dropped while another rule still wants the knob: that rule's
// desired state is what the knob should hold next.
func resolveConflicts(ds []Decision) []Decision {
	type knobKey struct {
		vm, disk string
		knob     Knob
	}
	best := map[knobKey]int{}
	wanted := map[knobKey]bool{}
	for i, d := range ds {
		k := knobKey{d.VM, d.Disk, d.Knob}
		if !d.Revert {
			wanted[k] = true
		}
		j, ok := best[k]
		if !ok || beats(d, ds[j]) {
			best[k] = i
		}
	}
	var out []Decision
	for i, d := range ds {
		k := knobKey{d.VM, d.Disk, d.Knob}
		switch {
		case d.Revert && wanted[k]:
			continue
		case d.Revert:
			out = append(out, d) // several reverts of one knob: each rule restores its own
		case best[k] == i:
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.VM != b.VM {
			return a.VM < b.VM
		}
		if a.Disk != b.Disk {
			return a.Disk < b.Disk
		}
		if a.Knob != b.Knob {
			return a.Knob < b.Knob
		}
		return a.Rule < b.Rule
	})
	return out
}

// beats reports whether a should win over b for the same knob.
func beats(a, b Decision) bool {
	if a.Revert != b.Revert {
		return !a.Revert // a desired state beats a revert
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if a.Knob == KnobThrottle && a.Action.Throttle != nil && b.Action.Throttle != nil {
		ai, ab := throttleBudget(*a.Action.Throttle)
		bi, bb := throttleBudget(*b.Action.Throttle)
		if ai != bi {
			return ai < bi
		}
		if ab != bb {
			return ab < bb
		}
	}
	return a.Rule < b.Rule
}

// throttleBudget is the most operations and bytes per second a throttle
// lets through (+Inf where it sets no limit).
func throttleBudget(t sample.Throttle) (iops, bps float64) {
	limit := func(total, rd, wr uint64) float64 {
		if total != 0 {
			return float64(total)
		}
		if rd == 0 || wr == 0 {
			return math.Inf(1) // an unlimited direction lets everything through
		}
		return float64(rd + wr)
	}
	return limit(t.IOPS, t.IOPSRead, t.IOPSWrite), limit(t.BPS, t.BPSRead, t.BPSWrite)
}
