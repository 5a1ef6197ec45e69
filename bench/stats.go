package main

import (
	"sort"
	"time"
)

// spread is a distribution's summary.
type spread struct {
	min, p50, p90, max time.Duration
}

// summarize gives min, nearest-rank p50 and p90, and max of ds.
func summarize(ds []time.Duration) spread {
	if len(ds) == 0 {
		return spread{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return spread{min: s[0], p50: nearestRank(s, 0.5), p90: nearestRank(s, 0.9), max: s[len(s)-1]}
}

// nearestRank is quantile q of sorted s: the smallest value with at
// least q of the values at or below it.
func nearestRank(s []time.Duration, q float64) time.Duration {
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// median of xs (the mean of the middle two when even); 0 when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
