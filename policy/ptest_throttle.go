package policy

import (
	"math"
	"strings"

	"github.com/qtune/qtune/internal/sample"
)

// A policy test plays the agent's part for throttles: what the policy
// decides is in force from the next step, and "limit" rates follow it.

// ownsThrottle reports whether the test gives the disk's throttle itself.
func (d testDisk) ownsThrottle() bool {
	for name := range d.series {
		if strings.HasPrefix(name, "throttle_") {
			return true
		}
	}
	return false
}

// applyThrottles plays the agent: enforced throttle decisions take effect.
func applyThrottles(applied map[[2]string]sample.Throttle, got []Decision) {
	for _, d := range got {
		if d.Knob != KnobThrottle || d.Mode != ModeEnforce {
			continue
		}
		k := [2]string{d.VM, d.Disk}
		switch {
		case d.Revert:
			delete(applied, k)
		case d.Action.Throttle != nil:
			applied[k] = *d.Action.Throttle
		}
	}
}

// pinRates turns "limit" rates into the limit in force: the split limit
// when there is one, else the total.
func pinRates(p *sample.Point) {
	t := p.Disk.Throttle
	pin := func(v *float64, split, total uint64) {
		if !math.IsInf(*v, 1) {
			return
		}
		switch {
		case split > 0:
			*v = float64(split)
		case total > 0:
			*v = float64(total)
		default:
			*v = math.NaN()
		}
	}
	pin(&p.Rates.ReadIOPS, t.IOPSRead, t.IOPS)
	pin(&p.Rates.WriteIOPS, t.IOPSWrite, t.IOPS)
	pin(&p.Rates.ReadBPS, t.BPSRead, t.BPS)
	pin(&p.Rates.WriteBPS, t.BPSWrite, t.BPS)
}
