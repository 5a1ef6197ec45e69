package policy

import (
	"math"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

func TestLatencyNormal(t *testing.T) {
	feed := func(n *latencyNormal, from time.Time, count int, every time.Duration, ms float64) time.Time {
		for i := 0; i < count; i++ {
			from = from.Add(every)
			n.add(from, ms)
		}
		return from
	}
	near := func(t *testing.T, got, want float64) {
		t.Helper()
		if math.IsNaN(got) || got < want/1.2 || got > want*1.2 {
			t.Errorf("normal %.3f ms, want about %.3f", got, want)
		}
	}
	t.Run("unknown before enough samples", func(t *testing.T) {
		var n latencyNormal
		at := feed(&n, t0, NormalMinSamples-1, time.Second, 1)
		if v := n.value(); !math.IsNaN(v) {
			t.Fatalf("normal %v after %d samples", v, NormalMinSamples-1)
		}
		feed(&n, at, 1, time.Second, 1)
		near(t, n.value(), 1)
	})
	t.Run("a slowdown for less than half of the recent past is not normal", func(t *testing.T) {
		var n latencyNormal
		at := feed(&n, t0, 60, time.Second, 2)
		feed(&n, at, 40, time.Second, 30)
		near(t, n.value(), 2)
	})
	t.Run("one that lasts becomes normal", func(t *testing.T) {
		var n latencyNormal
		at := feed(&n, t0, 60, time.Second, 2)
		feed(&n, at.Add(time.Hour), 20, time.Second, 30)
		near(t, n.value(), 30)
	})
	t.Run("spread values give their median", func(t *testing.T) {
		var n latencyNormal
		at := t0
		for i := 0; i < 100; i++ {
			at = at.Add(time.Second)
			n.add(at, float64(1+i%8)) // 1 to 8 ms in turn
		}
		near(t, n.value(), 4.5)
	})
}

// devPoint is a disk on device 8:16 reading 200 times a second at the
// latencies given, over one-second samples.
func devPoint(vm string, at time.Time, readLat, readP99, writeBPS float64) sample.Point {
	p := point(vm, "vda", at, 0)
	p.Disk.HostDevice = "8:16"
	p.Rates.Interval = time.Second
	p.Rates.ReadIOPS, p.Rates.ReadLatencyMs, p.Rates.ReadP99Ms = 200, readLat, readP99
	p.Rates.WriteBPS = writeBPS
	if math.IsNaN(readLat) {
		p.Rates.ReadIOPS = 0
	}
	return p
}

// The culprit's rule reads how much slower than usual its neighbour is:
// the victim's normal is learnt from its calm samples, and its slow
// ones are compared with it.
func TestNeighbourLatencyRelativeToNormal(t *testing.T) {
	ev := NewEvaluator(mustParse(t, `
rule "protect" {
  when = disk.neighbour_read_latency_p99_ratio > 3 && disk.neighbour_read_latency_ratio > 2 && disk.device_write_share > 0.5
  for  = "0s"
  throttle { write_bps = "10MiB" }
}`))
	at := t0
	step := func(victimLat, victimP99 float64) []Decision {
		at = at.Add(time.Second)
		return ev.Evaluate(at, []sample.Point{devPoint("victim", at, victimLat, victimP99, 0), devPoint("culprit", at, math.NaN(), math.NaN(), 8e8)})
	}
	for i := 0; i < NormalMinSamples; i++ {
		if ds := step(1, 8); len(ds) != 0 {
			t.Fatalf("acted while learning the normal: %+v", ds)
		}
	}
	if ds := step(1.5, 12); len(ds) != 0 {
		t.Fatalf("acted on a victim 1.5 times slower than usual: %+v", ds)
	}
	ds := step(3, 48)
	if len(ds) != 1 || ds[0].VM != "culprit" {
		t.Fatalf("decisions %+v, want the culprit throttled", ds)
	}
	if r := ds[0].Inputs["disk.neighbour_read_latency_p99_ratio"]; r < 5 || r > 7 {
		t.Errorf("p99 ratio %.2f, want about 6 (48 ms over a normal of 8)", r)
	}
	if r := ds[0].Inputs["disk.neighbour_read_latency_ratio"]; r < 2.5 || r > 3.5 {
		t.Errorf("ratio %.2f, want about 3", r)
	}
}

func TestReadLatencyRatioNeedsEnoughReads(t *testing.T) {
	ns := normals{}
	at := t0
	for i := 0; i < 20; i++ {
		at = at.Add(time.Second)
		ns.add([]sample.Point{devPoint("vm1", at, 2, 10, 0)})
	}
	p := devPoint("vm1", at.Add(time.Second), 20, 100, 0)
	if mean, p99 := ns.ratios(&p); math.Abs(mean-10) > 2 || math.Abs(p99-10) > 2 {
		t.Fatalf("ratios %.2f %.2f, want about 10", mean, p99)
	}
	p.Rates.ReadIOPS = 50 // 50 reads in the second: enough for a mean, not a p99
	if mean, p99 := ns.ratios(&p); math.IsNaN(mean) || !math.IsNaN(p99) {
		t.Errorf("with 50 reads: ratios %v %v, want a mean and no p99", mean, p99)
	}
	p.Rates.ReadIOPS = 5
	if mean, _ := ns.ratios(&p); !math.IsNaN(mean) {
		t.Errorf("with 5 reads: ratio %v, want unknown", mean)
	}
	if _, ok := ns["vm2/vda"]; ok {
		t.Fatal("a normal for a disk never seen")
	}
	q := devPoint("vm2", at, math.NaN(), math.NaN(), 1e6)
	ns.add([]sample.Point{q})
	if _, ok := ns["vm2/vda"]; ok {
		t.Error("a disk that does not read got a normal")
	}
}
