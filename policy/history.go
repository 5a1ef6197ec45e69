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
	at   time.Time
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
		hp := histPoint{at: p.Disk.Time, vals: make(map[string]float64, len(needed))}
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
// sample in it has the metric.
func (h *history) window(vm, disk string, s windowSite, now time.Time) float64 {
	var vals []float64
	from := now.Add(-s.window)
	for _, p := range h.series[vm+"\x00"+disk] {
		if p.at.After(from) && !p.at.After(now) {
			if v, ok := p.vals[s.metric]; ok {
				vals = append(vals, v)
			}
		}
	}
	if len(vals) == 0 {
		return math.NaN()
	}
	switch s.fn {
	case "avg_over":
		sum := 0.0
		for _, v := range vals {
			sum += v
		}
		return sum / float64(len(vals))
	case "max_over":
		m := vals[0]
		for _, v := range vals {
			m = math.Max(m, v)
		}
		return m
	case "min_over":
		m := vals[0]
		for _, v := range vals {
			m = math.Min(m, v)
		}
		return m
	case "p50_over":
		sort.Float64s(vals)
		if n := len(vals); n%2 == 0 {
			return (vals[n/2-1] + vals[n/2]) / 2
		}
		return vals[len(vals)/2]
	case "p95_over":
		sort.Float64s(vals)
		return vals[int(math.Ceil(0.95*float64(len(vals))))-1]
	}
	return math.NaN()
}
