package policy

import (
	"fmt"
	"math"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/qtune/qtune/internal/sample"
)

// Censored metrics.
//
// A throttle qtune holds caps the very rates a rule may be watching: a
// disk pinned at 256 write IOPS says nothing about whether its guest
// still wants 3000. Such a reading is censored: the demand is at least
// what is seen, not what is seen. A comparison of a censored reading
// therefore has three outcomes:
//
//	disk.write_iops > 1000   seen 254, pinned at 256   unknown (demand may be above or below)
//	disk.write_iops > 200    seen 254, pinned at 256   true    (demand ≥ 254 > 200)
//	disk.write_iops < 1000   seen 254, pinned at 256   unknown
//	disk.write_iops < 200    seen 254, pinned at 256   false
//
// An unknown condition neither fires a rule nor counts toward clear_after,
// exactly like a stale sample, so a firing rule holds its throttle for as
// long as the disk runs at the limit, and lets go once the disk runs well
// below it (the reading is then a real measure of demand).
//
// A censored reading is an unknown number with a lower bound (what is
// seen), so arithmetic and comparisons keep what can be known. && and ||
// follow Kleene's three-valued logic: false && unknown is false, true ||
// unknown is true, anything else with an unknown is unknown; ! keeps
// unknown unknown. So `disk.write_iops > 1000 || disk.read_iops > 500`
// fires on reads while writes are held down, and
// `disk.write_iops > 1000 && host.io_pressure_some_avg10 > 20` is false,
// not unknown, once the host is calm: the throttle is then released.

// PinnedShare is how close to a limit a disk must run for the limit to
// count as holding it down: at or above 90% of a throttle qtune holds,
// the capped metrics are censored.
const PinnedShare = 0.9

// censorSite is one comparison that reads a metric a throttle caps
// (directly, or through a window function over it), for policy check.
type censorSite struct {
	metric string
	other  hclsyntax.Expression // the other side of the comparison
	text   string               // the comparison as written
	rng    hcl.Range
}

// capped lists, for each metric a throttle can hold down, whether a
// throttle t pins it on point p.
var capped = map[string]func(t sample.Throttle, r sample.Rates) bool{
	"disk.write_iops": func(t sample.Throttle, r sample.Rates) bool {
		return pinned(r.WriteIOPS, t.IOPSWrite) || pinned(r.ReadIOPS+r.WriteIOPS, t.IOPS)
	},
	"disk.read_iops": func(t sample.Throttle, r sample.Rates) bool {
		return pinned(r.ReadIOPS, t.IOPSRead) || pinned(r.ReadIOPS+r.WriteIOPS, t.IOPS)
	},
	"disk.total_iops": func(t sample.Throttle, r sample.Rates) bool {
		return pinned(r.ReadIOPS+r.WriteIOPS, t.IOPS) || pinned(r.WriteIOPS, t.IOPSWrite) || pinned(r.ReadIOPS, t.IOPSRead)
	},
	"disk.write_bps": func(t sample.Throttle, r sample.Rates) bool {
		return pinned(r.WriteBPS, t.BPSWrite) || pinned(r.ReadBPS+r.WriteBPS, t.BPS)
	},
	"disk.read_bps": func(t sample.Throttle, r sample.Rates) bool {
		return pinned(r.ReadBPS, t.BPSRead) || pinned(r.ReadBPS+r.WriteBPS, t.BPS)
	},
}

func pinned(seen float64, limit uint64) bool {
	return limit > 0 && seen >= PinnedShare*float64(limit)
}

// censoredNow reports whether metric is held down on p by held.
func censoredNow(metric string, held *sample.Throttle, p *sample.Point) bool {
	f := capped[metric]
	return held != nil && f != nil && f(*held, p.Rates)
}

// censored is how a held-down reading enters an expression: an unknown
// number known to be at least what was seen. cty's comparisons use that
// bound, so "seen 254 > 200" stays true and "seen 254 > 1000" is unknown.
func censored(seen float64) cty.Value {
	if math.IsNaN(seen) || math.IsInf(seen, 0) {
		return cty.UnknownVal(cty.Number)
	}
	return cty.UnknownVal(cty.Number).Refine().NotNull().NumberRangeLowerBound(cty.NumberFloatVal(seen), true).NewValue()
}

// censoredValue is censored for a number value.
func censoredValue(v cty.Value) cty.Value {
	if !v.IsKnown() || v.IsNull() {
		return cty.UnknownVal(cty.Number)
	}
	f, _ := v.AsBigFloat().Float64()
	return censored(f)
}

// comparisons are the operators whose operands policy check looks at.
var comparisons = map[*hclsyntax.Operation]bool{
	hclsyntax.OpGreaterThan: true, hclsyntax.OpGreaterThanOrEqual: true,
	hclsyntax.OpLessThan: true, hclsyntax.OpLessThanOrEqual: true,
}

// findCensorable records the comparisons of a rule's condition that read
// a capped metric. It runs after the window calls are renamed.
func findCensorable(r *Rule, syn hclsyntax.Expression, text string) {
	hclsyntax.VisitAll(syn, func(n hclsyntax.Node) hcl.Diagnostics {
		bin, ok := n.(*hclsyntax.BinaryOpExpr)
		if !ok || !comparisons[bin.Op] {
			return nil
		}
		sides := []hclsyntax.Expression{bin.LHS, bin.RHS}
		for i, side := range sides {
			if m := r.cappedOperand(side); m != "" {
				r.censors = append(r.censors, censorSite{metric: m, other: sides[1-i], text: textOf(syn.Range(), text, bin.Range()), rng: bin.Range()})
			}
		}
		return nil
	})
}

// cappedOperand names the capped metric e reads directly, if any.
func (r *Rule) cappedOperand(e hclsyntax.Expression) string {
	metric := ""
	switch x := e.(type) {
	case *hclsyntax.ScopeTraversalExpr:
		metric, _ = metricName(x.Traversal)
	case *hclsyntax.FunctionCallExpr:
		for _, s := range r.sites {
			if s.id == x.Name {
				metric = s.metric
			}
		}
	}
	if capped[metric] == nil {
		return ""
	}
	return metric
}

// textOf is the part at rng of a condition written as text at whole.
func textOf(whole hcl.Range, text string, rng hcl.Range) string {
	off, end := rng.Start.Byte-whole.Start.Byte, rng.End.Byte-whole.Start.Byte
	if off < 0 || end > len(text) || off > end {
		return text
	}
	return text[off:end]
}

// capLimit is the tightest limit of t that holds metric down; 0 if none.
func capLimit(metric string, t sample.Throttle) uint64 {
	var lims []uint64
	switch metric {
	case "disk.write_iops":
		lims = []uint64{t.IOPSWrite, t.IOPS}
	case "disk.read_iops":
		lims = []uint64{t.IOPSRead, t.IOPS}
	case "disk.total_iops":
		lims = []uint64{t.IOPS, t.IOPSRead, t.IOPSWrite}
	case "disk.write_bps":
		lims = []uint64{t.BPSWrite, t.BPS}
	case "disk.read_bps":
		lims = []uint64{t.BPSRead, t.BPS}
	}
	var best uint64
	for _, l := range lims {
		if l > 0 && (best == 0 || l < best) {
			best = l
		}
	}
	return best
}

// constant is the value of an expression without variables or calls.
func constant(e hclsyntax.Expression) (float64, bool) {
	if len(e.Variables()) > 0 {
		return 0, false
	}
	v, diags := e.Value(nil)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.Number {
		return 0, false
	}
	f, _ := v.AsBigFloat().Float64()
	return f, true
}

// censorNotes explains, for policy check, which comparisons of a rule are
// censored while a throttle holds the disk, and what that means.
func censorNotes(c *collector, r *Rule) {
	t := r.Action.Throttle
	if t == nil {
		return
	}
	for _, s := range r.censors {
		limit := capLimit(s.metric, *t)
		if limit == 0 {
			continue
		}
		// A threshold below the pinned share is decided by the reading
		// itself (seen 250 > 100 is true whatever the demand).
		if v, ok := constant(s.other); ok && v < PinnedShare*float64(limit) {
			continue
		}
		c.note(s.rng, r.Name, fmt.Sprintf("%s is unknown while this rule's throttle keeps %s at ≥ %.0f%% of its limit", s.text, s.metric, PinnedShare*100),
			"the reading then shows the limit, not the demand; an unknown condition neither fires nor counts toward clear_after, so a firing rule holds until the disk runs well below its limit")
	}
}
