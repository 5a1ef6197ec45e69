package agent

import (
	"fmt"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/policy"
)

// histogramReader is a source on whose disks qtune can turn latency
// histograms on (plain QEMU). Under libvirt that would take QMP
// passthrough, which taints the domain: a libvirt disk has histograms
// only where its definition asks for them (<statistics>
// <latency-histogram>, libvirt 12.1), and the bulk stats carry them.
type histogramReader interface{ ReadsHistograms() bool }

// readsHistograms says whether the agent's source samples histograms.
func (a *Agent) readsHistograms() bool {
	r, ok := a.src.(histogramReader)
	return ok && r.ReadsHistograms()
}

// decideHistograms applies the config to the rules that need histograms:
// true keeps them on, false keeps them off, unset turns them on exactly
// while some rule needs them.
func decideHistograms(enabled *bool, rules []policy.HistogramRule, canSet bool) api.HistogramStatus {
	var names []string
	for _, r := range rules {
		names = append(names, r.Rule)
	}
	switch {
	case !canSet:
		return api.HistogramStatus{Why: "not set by qtune under libvirt (only disks whose <driver> declares <statistics><latency-histogram> have them)", Unknown: names}
	case enabled != nil && *enabled:
		return api.HistogramStatus{On: true, Why: "config"}
	case enabled != nil:
		return api.HistogramStatus{Why: "disabled by config", Unknown: names}
	case len(rules) > 0:
		return api.HistogramStatus{On: true, Why: "rule " + rules[0].Rule}
	}
	return api.HistogramStatus{Why: "no rule needs them"}
}

// applyHistograms decides for a set coming into force and logs what
// changed: once when histograms go on or off, and a warning per rule
// whose tail-latency condition they leave unknown. Each cycle then brings
// the disks in line, every change through the executor as a knob of its
// own (histograms_knob.go).
func (a *Agent) applyHistograms(set *policy.Set) {
	canSet := a.readsHistograms()
	rules := set.HistogramRules()
	st := decideHistograms(a.cfg.HistogramsEnabled, rules, canSet)
	a.mu.Lock()
	prev := a.status.Histograms
	a.status.Histograms = st
	a.mu.Unlock()
	if st.On != prev.On || (st.On && st.Why != prev.Why) {
		a.logHistograms(st, rules)
	}
	if st.Unknown != nil && fmt.Sprint(st.Unknown) != fmt.Sprint(prev.Unknown) {
		// Off by config is a choice the operator may not know defeats a
		// rule: a warning. Under libvirt it is how things are: info.
		logf := a.log.Warn
		if !canSet {
			logf = a.log.Info
		}
		for _, r := range rules {
			logf(fmt.Sprintf("rule %s reads %s, which will be unknown: latency histograms are off (%s)", r.Rule, r.Metric, st.Why),
				"rule", r.Rule, "metric", r.Metric)
		}
	}
}

func (a *Agent) logHistograms(st api.HistogramStatus, rules []policy.HistogramRule) {
	switch {
	case st.Why == "config":
		a.log.Info("latency histograms enabled on every disk by the config")
	case st.On:
		a.log.Info(fmt.Sprintf("latency histograms enabled on every disk: rule %s reads %s", rules[0].Rule, rules[0].Metric),
			"rule", rules[0].Rule, "metric", rules[0].Metric)
	default:
		a.log.Info("latency histograms disabled where qtune enabled them: no rule in force needs them")
	}
}
