package policy

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Self-defeating rules: conditions that a rule's own action decides.
//
// A rule whose action makes its own condition false lets go as soon as it
// works, and fires again once the knob is back: it flaps. A rule whose
// action makes its own condition true never lets go. policy check finds
// both by walking the condition with what the action does to each metric
// it reads (a throttle holds rates down and makes requests wait, a bigger
// L2 cache raises the coverage), and says what will happen and how to
// write it instead. Comparisons that censoring already handles (a disk
// rate read directly against a threshold near or above the limit) are
// only noted, not warned about.

// push is which way an action moves a metric once it works.
type push int

const (
	pushUp   push = 1
	pushDown push = -1
)

// effect is what a rule's action does to one metric, and why.
type effect struct {
	dir push
	why string
}

// actionEffects lists what r's action does to the metrics it moves.
func actionEffects(r *Rule) map[string]effect {
	out := map[string]effect{}
	switch {
	case r.Action.Throttle != nil:
		t := *r.Action.Throttle
		held := "the throttle holds it at its limit"
		for m := range capped {
			if capLimit(m, t) > 0 {
				out[m] = effect{pushDown, held}
			}
		}
		if t.IOPS|t.IOPSRead|t.IOPSWrite > 0 {
			out["vm.total_iops"] = effect{pushDown, held}
		}
		if t.BPS|t.BPSRead|t.BPSWrite > 0 {
			out["vm.total_bps"] = effect{pushDown, held}
			out["disk.device_write_share"] = effect{pushDown, "the throttle holds this disk's writes down"}
			out["disk.device_read_share"] = effect{pushDown, "the throttle holds this disk's reads down"}
		}
		queued := "requests wait in QEMU's throttle queue, and that wait counts"
		for _, m := range []string{"disk.read_latency_ms", "disk.write_latency_ms", "disk.read_latency_p95_ms", "disk.read_latency_p99_ms",
			"disk.write_latency_p95_ms", "disk.write_latency_p99_ms", "disk.read_latency_max_ms", "disk.write_latency_max_ms", "disk.queue_depth", "disk.read_latency_ratio", "disk.read_latency_p99_ratio"} {
			out[m] = effect{pushUp, queued}
		}
		set := "it reads the limit this rule sets"
		for _, m := range []string{"disk.throttle_iops", "disk.throttle_read_iops", "disk.throttle_write_iops", "disk.throttle_bps",
			"disk.throttle_read_bps", "disk.throttle_write_bps", "disk.throttled"} {
			out[m] = effect{pushUp, set}
		}
	case r.Action.L2Cache != nil:
		out["disk.l2_cache_size"] = effect{pushUp, "it reads the cache this rule enlarges"}
		out["disk.l2_coverage"] = effect{pushUp, "the bigger cache covers more of the disk"}
	}
	return out
}

// outcome is what the action does to a part of a condition.
type outcome struct {
	makesTrue bool
	text      string
	rng       hcl.Range
	why       string
}

// selfOutcomes walks a condition and returns the parts the action decides.
func selfOutcomes(r *Rule, expr hcl.Expression, text string, eff map[string]effect) []outcome {
	syn, ok := expr.(hclsyntax.Expression)
	if !ok {
		return nil
	}
	var out []outcome
	var walk func(e hclsyntax.Expression, neg bool)
	walk = func(e hclsyntax.Expression, neg bool) {
		switch x := e.(type) {
		case *hclsyntax.ParenthesesExpr:
			walk(x.Expression, neg)
		case *hclsyntax.UnaryOpExpr:
			if x.Op == hclsyntax.OpLogicalNot {
				walk(x.Val, !neg)
			}
		case *hclsyntax.ScopeTraversalExpr:
			// A bool metric used as is (disk.throttled).
			if m, _ := metricName(x.Traversal); eff[m].dir == pushUp {
				out = append(out, outcome{!neg, negated(textOf(syn.Range(), text, x.Range()), neg), x.Range(), eff[m].why})
			}
		case *hclsyntax.BinaryOpExpr:
			if x.Op == hclsyntax.OpLogicalAnd || x.Op == hclsyntax.OpLogicalOr {
				walk(x.LHS, neg)
				walk(x.RHS, neg)
				return
			}
			if o, ok := r.comparisonOutcome(x, eff); ok {
				o.makesTrue = o.makesTrue != neg
				o.text = negated(textOf(syn.Range(), text, x.Range()), neg)
				out = append(out, o)
			}
		}
	}
	walk(syn, false)
	return out
}

func negated(text string, neg bool) string {
	if neg {
		return "!(" + text + ")"
	}
	return text
}

// comparisonOutcome says whether the action makes a comparison true or
// false. Censored comparisons are left to censoring.
func (r *Rule) comparisonOutcome(x *hclsyntax.BinaryOpExpr, eff map[string]effect) (outcome, bool) {
	var greater bool // "metric side > other side" when it holds
	switch x.Op {
	case hclsyntax.OpGreaterThan, hclsyntax.OpGreaterThanOrEqual:
		greater = true
	case hclsyntax.OpLessThan, hclsyntax.OpLessThanOrEqual:
	default:
		return outcome{}, false
	}
	sides := []hclsyntax.Expression{x.LHS, x.RHS}
	for i, side := range sides {
		m := r.operandMetric(side)
		e, ok := eff[m]
		if !ok {
			continue
		}
		if e.dir == pushDown && capped[m] != nil {
			// Read directly: censored near the limit; below it, the
			// reading decides and the throttle does not.
			continue
		}
		g := greater == (i == 0)
		return outcome{makesTrue: g == (e.dir == pushUp), rng: x.Range(), why: e.why}, true
	}
	return outcome{}, false
}

// operandMetric names the metric e reads directly or through a window.
func (r *Rule) operandMetric(e hclsyntax.Expression) string {
	switch x := e.(type) {
	case *hclsyntax.ScopeTraversalExpr:
		m, _ := metricName(x.Traversal)
		return m
	case *hclsyntax.FunctionCallExpr:
		for _, s := range r.sites {
			if s.id == x.Name {
				return s.metric
			}
		}
	}
	return ""
}

// checkSelfDefeat warns about enforced rules whose own action decides
// their way in or out.
func checkSelfDefeat(c *collector, r *Rule) {
	if r.Mode != ModeEnforce || r.When == nil {
		return
	}
	eff := actionEffects(r)
	if len(eff) == 0 {
		return
	}
	knob := string(r.Knob)
	if r.ReleaseWhen == nil {
		for _, o := range selfOutcomes(r, r.When, r.WhenText, eff) {
			if o.makesTrue {
				c.warn(o.rng, r.Name, fmt.Sprintf("self-sustaining: %s turns true once the %s works (%s)", o.text, knob, o.why),
					"the rule then never lets go of the knob; add release_when with a condition the action does not raise, e.g. host.io_pressure_some_avg10 < 5")
			} else {
				c.warn(o.rng, r.Name, fmt.Sprintf("self-defeating: %s turns false once the %s works (%s)", o.text, knob, o.why),
					fmt.Sprintf("the rule then lets go after clear_after, the knob goes back, and it fires again after for: it flaps; keep when for the way in and add release_when with a condition the %s does not decide", knob))
			}
		}
		return
	}
	for _, o := range selfOutcomes(r, r.ReleaseWhen, r.ReleaseText, eff) {
		if o.makesTrue {
			c.warn(o.rng, r.Name, fmt.Sprintf("self-defeating release: %s turns true once the %s works (%s)", o.text, knob, o.why),
				"the rule then lets go after clear_after and fires again: it flaps; release on a condition the action does not decide")
		} else {
			c.warn(o.rng, r.Name, fmt.Sprintf("never released: %s stays false while the %s holds (%s)", o.text, knob, o.why),
				"release on a condition the action does not decide")
		}
	}
}
