package policy

import (
	"slices"
	"strings"
)

// NeedsHistograms says whether a metric is computed from QEMU's latency
// histograms (its p95/p99 percentiles, and what is derived from them):
// without histograms on the disk it is unknown.
func NeedsHistograms(metric string) bool {
	return strings.Contains(metric, "_p95") || strings.Contains(metric, "_p99")
}

// Metrics are the metrics the rule's conditions (when and release_when,
// window function arguments included) read, in the order first written.
func (r *Rule) Metrics() []string { return slices.Clone(r.refs) }

// HistogramMetric is the first metric the rule reads that needs latency
// histograms, or "" when it reads none.
func (r *Rule) HistogramMetric() string {
	for _, m := range r.refs {
		if NeedsHistograms(m) {
			return m
		}
	}
	return ""
}

// HistogramRule is a rule that reads a metric needing latency histograms.
type HistogramRule struct {
	Rule   string
	Metric string // the first such metric it reads
}

// HistogramRules are the rules of the set that read a metric needing
// latency histograms, in the set's order: the agent turns histograms on
// for them.
func (s *Set) HistogramRules() []HistogramRule {
	var out []HistogramRule
	for _, r := range s.Rules {
		if m := r.HistogramMetric(); m != "" {
			out = append(out, HistogramRule{Rule: r.Name, Metric: m})
		}
	}
	return out
}

// histogramNote tells policy check that a rule depends on histograms,
// which the agent config can refuse and libvirt does not offer.
func histogramNote(c *collector, r *Rule) {
	m := r.HistogramMetric()
	if m == "" || r.When == nil {
		return
	}
	c.note(r.When.Range(), r.Name, m+" needs QEMU latency histograms: the agent turns them on for the plain QEMU VMs it samples",
		"unless its config says histograms { enabled = false }; then, and under libvirt on disks whose driver does not declare <statistics><latency-histogram> (libvirt 12.1), "+m+" is unknown and so is any comparison of it")
}

// NeedsTimedStats says whether a metric comes from a disk's timed
// statistics (libvirt's <statistics> on the disk's driver): the longest
// read or write of the last interval.
func NeedsTimedStats(metric string) bool { return strings.HasSuffix(metric, "_latency_max_ms") }

// timedStatsNote tells policy check that a rule reads what only disks
// with timed statistics have, which qtune never turns on by itself.
func timedStatsNote(c *collector, r *Rule) {
	if r.When == nil {
		return
	}
	for _, m := range r.refs {
		if NeedsTimedStats(m) {
			c.note(r.When.Range(), r.Name, m+" is known only for libvirt disks whose driver declares <statistics><statistic interval='N'/>, on libvirt 11.9 or later with QEMU 10.2",
				"qtune does not add the element (it would change the domain's definition); elsewhere "+m+" is unknown and so is any comparison of it")
			return
		}
	}
}
