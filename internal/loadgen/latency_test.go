package loadgen

import (
	"strings"
	"testing"
	"time"
)

func TestLatHistQuantiles(t *testing.T) {
	var h LatHist
	if h.Quantile(0.5) != 0 {
		t.Errorf("empty histogram has a median")
	}
	for i := 0; i < 98; i++ {
		h.Add(100 * time.Microsecond)
	}
	h.Add(10 * time.Millisecond)
	h.Add(10 * time.Millisecond)
	// Bucket bounds are within 19% above the latency.
	within := func(got, want time.Duration) bool { return got >= want && float64(got) <= 1.19*float64(want) }
	if p50 := h.Quantile(0.5); !within(p50, 100*time.Microsecond) {
		t.Errorf("p50 = %v, want about 100µs", p50)
	}
	if p98 := h.Quantile(0.98); !within(p98, 100*time.Microsecond) {
		t.Errorf("p98 = %v, want about 100µs", p98)
	}
	if p99 := h.Quantile(0.99); !within(p99, 10*time.Millisecond) {
		t.Errorf("p99 = %v, want about 10ms", p99)
	}
	if h.Add(time.Hour); h.Quantile(1) != LatBound(LatBuckets-1) {
		t.Errorf("an hour is not in the last bucket")
	}
}

func TestLatHistRoundTripAndMerge(t *testing.T) {
	var a, b LatHist
	a.Add(time.Microsecond)
	a.Add(3 * time.Millisecond)
	b.Add(3 * time.Millisecond)
	back, err := ParseLatHist(a.String())
	if err != nil || back != a {
		t.Fatalf("round trip %q: %v %v", a.String(), back, err)
	}
	back.Merge(b)
	if back.Count() != 3 || back.Quantile(0.5) != b.Quantile(0.5) {
		t.Errorf("merged %v", back)
	}
	for _, bad := range []string{"x", "1:", "100:1", "-1:2", "3:4;5"} {
		if _, err := ParseLatHist(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	p := Progress{Pattern: RandRead, ReadLat: a}
	if s := p.String(); !strings.Contains(s, " rlat="+a.String()) || !strings.Contains(s, "rp99=") || strings.Contains(s, "wlat") {
		t.Errorf("progress line %q", s)
	}
}
