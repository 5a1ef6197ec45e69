package policy

import (
	"math"
	"testing"

	"github.com/qtune/qtune/internal/sample"
)

// A rule on the longest write of libvirt's timed interval fires on a
// disk that has timed statistics, and says nothing of one that has not
// (unknown, as a p99 without histograms).
func TestWriteLatencyMaxRule(t *testing.T) {
	ev := NewEvaluator(mustParse(t, `
rule "slow-writes" {
  when = disk.write_latency_max_ms > 20
  for  = "0s"
  throttle { write_iops = 100 }
}`))
	timed := point("vm1", "vda", t0, 50)
	timed.Rates.WriteMaxMs, timed.Rates.ReadMaxMs = 42, math.NaN()
	plain := point("vm2", "vda", t0, 50)
	plain.Rates.WriteMaxMs, plain.Rates.ReadMaxMs = math.NaN(), math.NaN()
	ds := ev.Evaluate(t0, []sample.Point{timed, plain})
	if len(ds) != 1 || ds[0].VM != "vm1" || ds[0].Inputs["disk.write_latency_max_ms"] != 42 {
		t.Fatalf("decisions %+v, want one for vm1 with its 42 ms", ds)
	}
}
