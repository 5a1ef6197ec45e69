package policy

import (
	"math"
	"strings"
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

// policy check notes a rule on the timed-stats metrics, which only disks
// that declare <statistics> have; it does not turn histograms on.
func TestTimedStatsNote(t *testing.T) {
	set, problems, err := Parse(map[string][]byte{"p.hcl": []byte(`
rule "avg" {
  when = disk.write_latency_ms > 20
  throttle { write_iops = 100 }
}
rule "max" {
  when = disk.write_latency_max_ms > 50
  throttle { write_iops = 100 }
}
`)})
	if err != nil {
		t.Fatal(err)
	}
	n := problems.Notes().Error()
	if !strings.Contains(n, `rule "max": disk.write_latency_max_ms is known only for libvirt disks whose driver declares <statistics>`) || strings.Contains(n, `"avg"`) {
		t.Errorf("notes:\n%s", n)
	}
	if len(set.HistogramRules()) != 0 {
		t.Errorf("histogram rules %+v", set.HistogramRules())
	}
}
