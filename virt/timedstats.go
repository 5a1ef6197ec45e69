package virt

import (
	"strconv"
	"strings"

	"github.com/qtune/qtune/internal/sample"
)

// Timed block statistics and latency histograms in the bulk stats call.
//
// A disk whose <driver> declares <statistics><statistic interval='N'/>
// has QEMU keep min/max/avg latencies and mean queue depths over each
// interval (the device's stats-intervals: libvirt 11.9 with QEMU 10.2);
// libvirt returns them as block.<n>.timed_group.count and
// block.<n>.timed_group.<m>.{interval,rd_latency_max,wr_queue_depth_avg,
// ...} (the names of libvirt's VIR_DOMAIN_STATS_BLOCK_SUFFIX_TIMED_GROUP_*
// constants, 11.10). <statistics><latency-histogram type='read'> (12.1)
// adds block.<n>.latency_histogram.<read|write>.bin.<k>.{start,value}.
// Earlier releases (9.0, 11.3) have no such element in their schema:
// they drop it from the definition and return neither, and the disk's
// latency comes from the counters as before. Nothing here needs QMP, so
// nothing taints the domain.
//
// The timed field names are read loosely (dots and underscores alike,
// "flush" or "fl", "interval" or "interval_length"): they come from
// libvirt's constants, not from a reply of a release that has them (the
// lab's newest is 11.3), and a reading that missed a spelling would
// silently leave the metric unknown.

// timedGroupInfix sits between a disk's prefix and the group number.
const timedGroupInfix = "timed_group."

// decodeTimed reads the timed groups of the disk whose fields start with
// prefix ("block.3."); of several intervals it keeps the shortest, the
// freshest figure. nil when the disk has none.
func decodeTimed(prefix string, vals map[string]any) *sample.Timed {
	if len(vals) == 0 {
		return nil
	}
	groups := map[string]*sample.Timed{}
	prefix += timedGroupInfix
	for k, v := range vals {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		id, field, ok := strings.Cut(rest, ".")
		if !ok || id == "count" {
			continue
		}
		if _, err := strconv.Atoi(id); err != nil {
			continue
		}
		g := groups[id]
		if g == nil {
			g = &sample.Timed{}
			groups[id] = g
		}
		setTimedField(g, field, v)
	}
	var best *sample.Timed
	for _, g := range groups {
		if best == nil || (g.IntervalSec > 0 && (best.IntervalSec == 0 || g.IntervalSec < best.IntervalSec)) {
			best = g
		}
	}
	return best
}

// setTimedField stores one field of a group under its normalised name.
func setTimedField(g *sample.Timed, field string, v any) {
	name := strings.ReplaceAll(field, ".", "_")
	name = strings.NewReplacer("flush_", "fl_", "read_", "rd_", "write_", "wr_").Replace(name)
	u := func(p *uint64) { *p = asUint(v) }
	switch name {
	case "interval", "interval_length":
		u(&g.IntervalSec)
	case "rd_latency_min":
		u(&g.ReadMinNs)
	case "rd_latency_max":
		u(&g.ReadMaxNs)
	case "rd_latency_avg":
		u(&g.ReadAvgNs)
	case "wr_latency_min":
		u(&g.WriteMinNs)
	case "wr_latency_max":
		u(&g.WriteMaxNs)
	case "wr_latency_avg":
		u(&g.WriteAvgNs)
	case "fl_latency_max":
		u(&g.FlushMaxNs)
	case "rd_queue_depth_avg", "rd_queue_depth":
		g.ReadQueueDepth = asFloat(v)
	case "wr_queue_depth_avg", "wr_queue_depth":
		g.WriteQueueDepth = asFloat(v)
	}
}

func asFloat(v any) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return float64(asUint(v))
}

// decodeHistogram reads one latency histogram (prefix ends in
// "latency_histogram.read." or ".write."): bin k counts operations from
// its start (ns, QEMU's boundaries) up to the next bin's. nil when the
// disk has none or the bins do not make a histogram.
func decodeHistogram(prefix string, vals map[string]any) *sample.Histogram {
	n := int(asUint(vals[prefix+"bin.count"]))
	if n == 0 {
		return nil
	}
	starts, counts := make([]uint64, n), make([]uint64, n)
	for k := 0; k < n; k++ {
		bin := prefix + "bin." + strconv.Itoa(k) + "."
		start, ok := vals[bin+"start"]
		if !ok || (k > 0 && asUint(start) <= starts[k-1]) {
			return nil
		}
		starts[k], counts[k] = asUint(start), asUint(vals[bin+"value"])
	}
	// sample.Histogram's first bin starts at 0: a first start above 0
	// becomes a boundary with an empty bin below it.
	if starts[0] > 0 {
		return &sample.Histogram{Boundaries: starts, Bins: append([]uint64{0}, counts...)}
	}
	return &sample.Histogram{Boundaries: starts[1:], Bins: counts}
}
