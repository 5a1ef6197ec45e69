package loadgen

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// LatBuckets is the number of buckets of a LatHist: four per octave from
// 1 µs, so the last one ends past 30 s.
const LatBuckets = 100

// LatHist counts I/O latencies in logarithmic buckets, four per octave
// (each bucket about 19% wide): bucket i holds latencies up to
// 2^((i+1)/4) µs. Guests report one per interval and the host merges
// them, so percentiles over any window come out of the sum, which
// per-interval percentiles could not give.
type LatHist [LatBuckets]uint64

// latBucket is the bucket of latency d.
func latBucket(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	i := int(math.Ceil(4*math.Log2(us))) - 1
	return min(max(i, 0), LatBuckets-1)
}

// LatBound is the upper bound of bucket i.
func LatBound(i int) time.Duration {
	return time.Duration(math.Pow(2, float64(i+1)/4) * float64(time.Microsecond))
}

// Add counts one latency.
func (h *LatHist) Add(d time.Duration) { h[latBucket(d)]++ }

// Merge adds o's counts to h.
func (h *LatHist) Merge(o LatHist) {
	for i, n := range o {
		h[i] += n
	}
}

// Count is the number of latencies counted.
func (h LatHist) Count() uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// Quantile is the upper bound of the bucket holding quantile q (0..1) of
// the latencies counted, or 0 when there are none.
func (h LatHist) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h {
		seen += c
		if seen >= rank {
			return LatBound(i)
		}
	}
	return LatBound(LatBuckets - 1)
}

// String renders the non-empty buckets as "bucket:count;...", the form
// ParseLatHist reads.
func (h LatHist) String() string {
	var parts []string
	for i, c := range h {
		if c != 0 {
			parts = append(parts, fmt.Sprintf("%d:%d", i, c))
		}
	}
	return strings.Join(parts, ";")
}

// ParseLatHist reads what String wrote.
func ParseLatHist(s string) (LatHist, error) {
	var h LatHist
	if s == "" {
		return h, nil
	}
	for _, part := range strings.Split(s, ";") {
		a, b, ok := strings.Cut(part, ":")
		i, err1 := strconv.Atoi(a)
		c, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || i < 0 || i >= LatBuckets {
			return h, fmt.Errorf("latency histogram: bad bucket %q", part)
		}
		h[i] += c
	}
	return h, nil
}

// latCounter is a LatHist that workers add to concurrently and the
// reporter drains.
type latCounter [LatBuckets]atomic.Uint64

func (c *latCounter) add(d time.Duration) { c[latBucket(d)].Add(1) }

// drain returns the counts since the last drain and zeroes them.
func (c *latCounter) drain() LatHist {
	var h LatHist
	for i := range c {
		h[i] = c[i].Swap(0)
	}
	return h
}
