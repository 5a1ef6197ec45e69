package policy

import (
	"math"
	"sort"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/qtune/qtune/internal/sample"
)

// history keeps, per disk, the recent values of the metrics that window
// functions read, for as long as the longest window of the policy.
type history struct {
	keep   time.Duration
	series map[string][]histPoint // "vm\x00disk"
}

type histPoint struct {
	at time.Time
	// span is the time the sample's rates cover (the gap since the one
	// before): a quiet VM's sample every ten seconds weighs ten of a busy
	// one's each second.
	span time.Duration
	vals map[string]float64
}

func newHistory() *history { return &history{series: map[string][]histPoint{}} }

// configure sets what to keep for a policy set.
func (h *history) configure(s *Set) {
	h.keep = 0
	for _, r := range s.Rules {
		for _, site := range r.sites {
			h.keep = max(h.keep, site.window)
		}
	}
	if h.keep == 0 {
		h.series = map[string][]histPoint{}
	}
}

func (h *history) add(points []sample.Point, s *Set, aggs map[string]vmAgg, nbs map[string]neighbourhood) {
	if h.keep == 0 {
		return
	}
	needed := map[string]bool{}
	for _, r := range s.Rules {
		for _, site := range r.sites {
			needed[site.metric] = true
		}
	}
	for i := range points {
		p := &points[i]
		in := input{p: p, vm: aggs[p.Disk.VM], nb: nbs[p.Disk.VM+"/"+p.Disk.Name]}
		hp := histPoint{at: p.Disk.Time, span: p.Rates.Interval, vals: make(map[string]float64, len(needed))}
		for name := range needed {
			m, _ := LookupMetric(name)
			v := m.get(in)
			if !v.IsKnown() || v.Type() != cty.Number {
				continue
			}
			f, _ := v.AsBigFloat().Float64()
			hp.vals[name] = f
		}
		k := p.Disk.VM + "\x00" + p.Disk.Name
		ser := h.series[k]
		if n := len(ser); n > 0 && !hp.at.After(ser[n-1].at) {
			continue // the same sample seen again, or one out of order
		}
		h.series[k] = append(ser, hp)
	}
}

func (h *history) trim(now time.Time) {
	cut := now.Add(-h.keep)
	for k, ser := range h.series {
		i := sort.Search(len(ser), func(i int) bool { return !ser[i].at.Before(cut) })
		if i == len(ser) {
			delete(h.series, k)
			continue
		}
		h.series[k] = append(ser[:0:0], ser[i:]...)
	}
}

func (h *history) forget(vm string) {
	for k := range h.series {
		if strings.HasPrefix(k, vm+"\x00") {
			delete(h.series, k)
		}
	}
}

// window computes a window function over (now-window, now]; NaN when no
// sample in it has the metric. Averages and percentiles weigh each sample
// by the time its rates cover within the window, so that they count in
// time, not in samples, when disks are sampled at different cadences.
func (h *history) window(vm, disk string, s windowSite, now time.Time) float64 {
	var vals []weighted
	from := now.Add(-s.window)
	for _, p := range h.series[vm+"\x00"+disk] {
		if p.at.After(from) && !p.at.After(now) {
			if v, ok := p.vals[s.metric]; ok {
				start := p.at.Add(-p.span)
				if start.Before(from) {
					start = from
				}
				w := p.at.Sub(start).Seconds()
				vals = append(vals, weighted{v, w})
			}
		}
	}
	if len(vals) == 0 {
		return math.NaN()
	}
	total, equal := 0.0, true
	for _, v := range vals {
		total += v.w
		equal = equal && v.w == vals[0].w
	}
	if total <= 0 || equal { // no spans known, or all alike: each sample counts once
		for i := range vals {
			vals[i].w = 1
		}
		total = float64(len(vals))
	}
	switch s.fn {
	case "avg_over":
		sum := 0.0
		for _, v := range vals {
			sum += v.v * v.w
		}
		return sum / total
	case "max_over":
		m := vals[0].v
		for _, v := range vals {
			m = math.Max(m, v.v)
		}
		return m
	case "min_over":
		m := vals[0].v
		for _, v := range vals {
			m = math.Min(m, v.v)
		}
		return m
	case "p50_over":
		sort.Slice(vals, func(i, j int) bool { return vals[i].v < vals[j].v })
		if n := len(vals); equal && n%2 == 0 {
			return (vals[n/2-1].v + vals[n/2].v) / 2
		}
		return quantile(vals, total, 0.5)
	case "p95_over":
		sort.Slice(vals, func(i, j int) bool { return vals[i].v < vals[j].v })
		return quantile(vals, total, 0.95)
	}
	return math.NaN()
}

// weighted is a sample's value and the seconds it covers.
type weighted struct{ v, w float64 }

// quantile is the first value, in sorted vals, at which the weight
// reaches q of total (with equal weights: vals[ceil(q*n)-1]).
func quantile(vals []weighted, total, q float64) float64 {
	acc := 0.0
	for _, v := range vals {
		acc += v.w
		if acc >= q*total*(1-1e-12) {
			return v.v
		}
	}
	return vals[len(vals)-1].v
}
