package sample

import (
	"math"
	"time"
)

// Derive computes the rates between two samples of the same disk.
func Derive(prev, cur Disk) (Rates, error) {
	dt := cur.Time.Sub(prev.Time)
	if dt <= 0 {
		return Rates{}, ErrNoInterval
	}
	p, c := prev.Counters, cur.Counters
	if c.ReadOps < p.ReadOps || c.WriteOps < p.WriteOps || c.FlushOps < p.FlushOps ||
		c.ReadBytes < p.ReadBytes || c.WriteBytes < p.WriteBytes ||
		c.ReadTimeNs < p.ReadTimeNs || c.WriteTimeNs < p.WriteTimeNs || c.FlushTimeNs < p.FlushTimeNs {
		return Rates{}, ErrCounterReset
	}
	sec := dt.Seconds()
	r := Rates{
		Interval:       dt,
		ReadIOPS:       float64(c.ReadOps-p.ReadOps) / sec,
		WriteIOPS:      float64(c.WriteOps-p.WriteOps) / sec,
		FlushIOPS:      float64(c.FlushOps-p.FlushOps) / sec,
		ReadBPS:        float64(c.ReadBytes-p.ReadBytes) / sec,
		WriteBPS:       float64(c.WriteBytes-p.WriteBytes) / sec,
		ReadLatencyMs:  avgMs(c.ReadTimeNs-p.ReadTimeNs, c.ReadOps-p.ReadOps),
		WriteLatencyMs: avgMs(c.WriteTimeNs-p.WriteTimeNs, c.WriteOps-p.WriteOps),
		FlushLatencyMs: avgMs(c.FlushTimeNs-p.FlushTimeNs, c.FlushOps-p.FlushOps),
		QueueDepth: float64((c.ReadTimeNs-p.ReadTimeNs)+(c.WriteTimeNs-p.WriteTimeNs)+
			(c.FlushTimeNs-p.FlushTimeNs)) / float64(dt/time.Nanosecond),
	}
	r.ReadP95Ms, r.ReadP99Ms = histPercentiles(p.ReadHist, c.ReadHist)
	r.WriteP95Ms, r.WriteP99Ms = histPercentiles(p.WriteHist, c.WriteHist)
	r.ReadMaxMs, r.WriteMaxMs = timedMax(cur.Timed)
	return r, nil
}

// timedMax is the longest read and write of the last timed interval. It
// is QEMU's own figure for an interval that ended before the sample, not
// a difference between samples: it needs no previous one.
func timedMax(t *Timed) (read, write float64) {
	read, write = math.NaN(), math.NaN()
	if t == nil {
		return read, write
	}
	// A kind of operation the interval did not see has all zeros.
	if t.ReadMaxNs > 0 {
		read = float64(t.ReadMaxNs) / 1e6
	}
	if t.WriteMaxNs > 0 {
		write = float64(t.WriteMaxNs) / 1e6
	}
	return read, write
}

func avgMs(dns, ops uint64) float64 {
	if ops == 0 {
		return math.NaN()
	}
	return float64(dns) / float64(ops) / 1e6
}

func histPercentiles(prev, cur *Histogram) (p95, p99 float64) {
	d := histDelta(prev, cur)
	return Percentile(d, 0.95), Percentile(d, 0.99)
}

// histDelta is cur-prev bin by bin; a nil or reshaped prev (boundaries
// changed, or counts went back) means cur counts from zero.
func histDelta(prev, cur *Histogram) *Histogram {
	if cur == nil {
		return nil
	}
	if prev == nil || len(prev.Bins) != len(cur.Bins) || !equalU64(prev.Boundaries, cur.Boundaries) {
		return cur
	}
	d := &Histogram{Boundaries: cur.Boundaries, Bins: make([]uint64, len(cur.Bins))}
	for i := range cur.Bins {
		if cur.Bins[i] < prev.Bins[i] {
			return cur
		}
		d.Bins[i] = cur.Bins[i] - prev.Bins[i]
	}
	return d
}

// Percentile returns the q-quantile (0<q<1) of h in milliseconds, linearly
// interpolated inside the bin that holds it. The open-ended last bin answers
// with its lower boundary, so a tail beyond the last boundary is reported as
// "at least" that. NaN when h is nil or empty.
func Percentile(h *Histogram, q float64) float64 {
	if h == nil || len(h.Bins) == 0 || len(h.Bins) != len(h.Boundaries)+1 {
		return math.NaN()
	}
	var total uint64
	for _, b := range h.Bins {
		total += b
	}
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	var cum float64
	for i, b := range h.Bins {
		if b == 0 {
			continue
		}
		if cum+float64(b) < rank {
			cum += float64(b)
			continue
		}
		lo := 0.0
		if i > 0 {
			lo = float64(h.Boundaries[i-1])
		}
		if i == len(h.Boundaries) {
			return lo / 1e6
		}
		hi := float64(h.Boundaries[i])
		return (lo + (hi-lo)*(rank-cum)/float64(b)) / 1e6
	}
	return float64(h.Boundaries[len(h.Boundaries)-1]) / 1e6
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
