package sample

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func TestDeriveRates(t *testing.T) {
	prev := Disk{Time: t0, Counters: Counters{
		ReadOps: 100, WriteOps: 50, FlushOps: 10,
		ReadBytes: 409600, WriteBytes: 204800,
		ReadTimeNs: 1e9, WriteTimeNs: 2e9, FlushTimeNs: 1e8,
	}}
	cur := Disk{Time: t0.Add(2 * time.Second), Counters: Counters{
		ReadOps: 300, WriteOps: 150, FlushOps: 10,
		ReadBytes: 409600 + 800*1024, WriteBytes: 204800 + 400*1024,
		ReadTimeNs: 1e9 + 4e8, WriteTimeNs: 2e9 + 1e9, FlushTimeNs: 1e8,
	}}
	r, err := Derive(prev, cur)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want float64
	}{
		{"read_iops", r.ReadIOPS, 100},
		{"write_iops", r.WriteIOPS, 50},
		{"flush_iops", r.FlushIOPS, 0},
		{"read_bps", r.ReadBPS, 400 * 1024},
		{"write_bps", r.WriteBPS, 200 * 1024},
		{"read_latency_ms", r.ReadLatencyMs, 2},    // 400 ms over 200 reads
		{"write_latency_ms", r.WriteLatencyMs, 10}, // 1 s over 100 writes
		{"queue_depth", r.QueueDepth, 0.7},         // 1.4 s busy over 2 s
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !math.IsNaN(r.FlushLatencyMs) {
		t.Errorf("flush latency with no flushes = %v, want NaN", r.FlushLatencyMs)
	}
	if !math.IsNaN(r.ReadP95Ms) {
		t.Errorf("p95 without histogram = %v, want NaN", r.ReadP95Ms)
	}
}

func TestDeriveRefusesBadPairs(t *testing.T) {
	a := Disk{Time: t0, Counters: Counters{ReadOps: 10}}
	if _, err := Derive(a, a); !errors.Is(err, ErrNoInterval) {
		t.Errorf("same instant: err = %v, want ErrNoInterval", err)
	}
	b := Disk{Time: t0.Add(time.Second), Counters: Counters{ReadOps: 5}}
	if _, err := Derive(a, b); !errors.Is(err, ErrCounterReset) {
		t.Errorf("counter back: err = %v, want ErrCounterReset", err)
	}
}

func TestPercentile(t *testing.T) {
	// Boundaries 1 ms, 10 ms, 100 ms: bins [0,1) [1,10) [10,100) [100,inf).
	h := &Histogram{Boundaries: []uint64{1e6, 10e6, 100e6}, Bins: []uint64{90, 5, 4, 1}}
	tests := []struct {
		q    float64
		want float64
	}{
		{0.5, 0.5555555555555556}, // inside the first bin
		{0.95, 10},                // exactly at the top of the second bin
		{0.97, 55},                // halfway through the third bin
		{0.999, 100},              // the open bin answers with its floor
	}
	for _, tc := range tests {
		if got := Percentile(h, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := Percentile(&Histogram{Boundaries: []uint64{1}, Bins: []uint64{0, 0}}, 0.5); !math.IsNaN(got) {
		t.Errorf("empty histogram = %v, want NaN", got)
	}
}

func TestDeriveHistogramDelta(t *testing.T) {
	b := []uint64{1e6, 10e6}
	prev := Disk{Time: t0, Counters: Counters{ReadHist: &Histogram{Boundaries: b, Bins: []uint64{1000, 0, 0}}}}
	cur := Disk{Time: t0.Add(time.Second), Counters: Counters{ReadHist: &Histogram{Boundaries: b, Bins: []uint64{1000, 0, 10}}}}
	r, err := Derive(prev, cur)
	if err != nil {
		t.Fatal(err)
	}
	// Only the ten slow reads happened in the interval, so the tail is slow
	// even though the cumulative histogram is dominated by fast reads.
	if r.ReadP95Ms != 10 {
		t.Errorf("read p95 = %v, want 10 (floor of the open bin)", r.ReadP95Ms)
	}
}

func TestL2Coverage(t *testing.T) {
	d := Disk{VirtualSize: 64 << 30, ClusterSize: 64 << 10}
	if got := d.L2Needed(); got != 8<<20 {
		t.Fatalf("L2Needed = %d, want 8 MiB", got)
	}
	d.ExtendedL2 = true
	if got := d.L2Needed(); got != 16<<20 {
		t.Fatalf("L2Needed with extended L2 = %d, want 16 MiB", got)
	}
	d.ExtendedL2 = false
	d.L2CacheSize = 1 << 20
	if got := d.L2Coverage(); got != 0.125 {
		t.Fatalf("L2Coverage = %v, want 0.125", got)
	}
	d.L2CacheSize = 32 << 20
	if got := d.L2Coverage(); got != 1 {
		t.Fatalf("L2Coverage over-sized = %v, want 1", got)
	}
}

func TestPointJSONKeepsNaN(t *testing.T) {
	p := Point{
		Disk: Disk{VM: "v", Name: "vda", Time: t0, HostDevUtil: math.NaN(), Counters: Counters{ReadOps: 7}, Throttle: Throttle{IOPSWrite: 5},
			Health: &Health{At: t0, Fragmentation: math.NaN(), FSFreeRatio: 0.25, SnapshotCount: 3}},
		Rates: Rates{ReadIOPS: 3, ReadLatencyMs: math.NaN()},
		Host:  Host{IOPressureSomeAvg10: math.NaN(), IOPressureSomeAvg60: 1.5},
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Point
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(back.Rates.ReadLatencyMs) || !math.IsNaN(back.Disk.HostDevUtil) || !math.IsNaN(back.Host.IOPressureSomeAvg10) ||
		back.Disk.Health == nil || !math.IsNaN(back.Disk.Health.Fragmentation) || back.Disk.Health.FSFreeRatio != 0.25 || back.Disk.Health.SnapshotCount != 3 {
		t.Errorf("NaN lost: %s", b)
	}
	if back.Rates.ReadIOPS != 3 || back.Disk.ReadOps != 7 || back.Disk.Throttle.IOPSWrite != 5 || back.Host.IOPressureSomeAvg60 != 1.5 || !back.Disk.Time.Equal(t0) {
		t.Errorf("round trip: %+v from %s", back, b)
	}
}

// The longest read and write come from the current sample's timed
// group, QEMU's own figure for its last interval; without one, or with
// no writes in it, they are unknown.
func TestDeriveTimedMax(t *testing.T) {
	t0 := time.Unix(1000, 0)
	prev := Disk{Time: t0}
	cur := Disk{Time: t0.Add(time.Second), Timed: &Timed{IntervalSec: 1, WriteMaxNs: 42e6, WriteAvgNs: 3e6}}
	r, err := Derive(prev, cur)
	if err != nil {
		t.Fatal(err)
	}
	if r.WriteMaxMs != 42 || !math.IsNaN(r.ReadMaxMs) {
		t.Errorf("max read %v write %v, want NaN and 42", r.ReadMaxMs, r.WriteMaxMs)
	}
	cur.Timed = nil
	if r, _ := Derive(prev, cur); !math.IsNaN(r.WriteMaxMs) || !math.IsNaN(r.ReadMaxMs) {
		t.Errorf("without timed stats: %v %v", r.ReadMaxMs, r.WriteMaxMs)
	}
	if (Disk{}).LatencySource() != LatencyCounters || cur.LatencySource() != LatencyCounters ||
		(Disk{Timed: &Timed{}}).LatencySource() != LatencyTimed ||
		(Disk{Timed: &Timed{}, Counters: Counters{ReadHist: &Histogram{}}}).LatencySource() != LatencyHistogram {
		t.Error("latency sources")
	}
}
