package policy

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func mustParse(t *testing.T, src string) *Set {
	t.Helper()
	set, _, err := Parse(map[string][]byte{"p.hcl": []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func point(vm, disk string, at time.Time, writeIOPS float64) sample.Point {
	return sample.Point{
		Disk:  sample.Disk{VM: vm, Name: disk, Time: at, Format: "qcow2"},
		Rates: sample.Rates{WriteIOPS: writeIOPS, ReadLatencyMs: math.NaN()},
	}
}

const throttleRule = `
rule "calm" {
  when        = disk.write_iops > 1000
  for         = "30s"
  clear_after = "60s"
  throttle { write_iops = 300 }
}`

// run feeds one disk's write IOPS every 10 s and returns, per step,
// "apply", "revert" or "" for the rule's decision.
func run(t *testing.T, ev *Evaluator, series []float64) []string {
	t.Helper()
	out := make([]string, len(series))
	for i, v := range series {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		var pts []sample.Point
		if !math.IsNaN(v) {
			pts = []sample.Point{point("vm1", "vda", now, v)}
		}
		for _, d := range ev.Evaluate(now, pts) {
			if d.Revert {
				out[i] = "revert"
			} else {
				out[i] = "apply"
			}
		}
	}
	return out
}

func firstIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestFiresAfterForAndRevertsAfterClearAfter(t *testing.T) {
	ev := NewEvaluator(mustParse(t, throttleRule))
	series := []float64{100, 2000, 2000, 2000, 2000, 2000, 100, 100, 100, 100, 100, 100, 100, 100}
	got := run(t, ev, series)
	// True from step 1 (10s); held 30 s at step 4.
	if i := firstIndex(got, "apply"); i != 4 {
		t.Errorf("first apply at step %d, want 4: %q", i, got)
	}
	// False from step 6; 60 s later, step 12, revert.
	if i := firstIndex(got, "revert"); i != 12 {
		t.Errorf("revert at step %d, want 12: %q", i, got)
	}
	if got[13] != "" {
		t.Errorf("decision after the revert: %q", got)
	}
}

func TestOscillationFasterThanForNeverFires(t *testing.T) {
	ev := NewEvaluator(mustParse(t, throttleRule))
	var series []float64
	for i := 0; i < 60; i++ {
		// Above the threshold for 20 s, below for 10 s: never 30 s in a row.
		if i%3 == 2 {
			series = append(series, 900)
		} else {
			series = append(series, 1100)
		}
	}
	if got := run(t, ev, series); firstIndex(got, "apply") >= 0 {
		t.Fatalf("fired on a metric that never held for 30s: %q", got)
	}
}

func TestOscillationWhileFiringFasterThanClearAfterNeverReverts(t *testing.T) {
	ev := NewEvaluator(mustParse(t, throttleRule))
	series := []float64{2000, 2000, 2000, 2000, 2000}
	for i := 0; i < 60; i++ {
		// Calm for 50 s, loud for 10 s: never 60 s calm in a row.
		if i%6 == 5 {
			series = append(series, 2000)
		} else {
			series = append(series, 100)
		}
	}
	got := run(t, ev, series)
	if firstIndex(got, "apply") != 3 {
		t.Fatalf("did not fire: %q", got)
	}
	if i := firstIndex(got, "revert"); i >= 0 {
		t.Fatalf("reverted at step %d though the calm never lasted 60s: %q", i, got)
	}
}

func TestStaleAndMissingSamples(t *testing.T) {
	set := mustParse(t, throttleRule)
	t.Run("stale samples never fire", func(t *testing.T) {
		ev := NewEvaluator(set)
		old := t0.Add(-time.Hour)
		for i := 0; i < 10; i++ {
			now := t0.Add(time.Duration(i) * 10 * time.Second)
			if ds := ev.Evaluate(now, []sample.Point{point("vm1", "vda", old, 5000)}); len(ds) != 0 {
				t.Fatalf("decision on a stale sample: %+v", ds)
			}
		}
	})
	t.Run("missing and unknown samples never revert", func(t *testing.T) {
		ev := NewEvaluator(mustParse(t, `
rule "lat" {
  when        = disk.read_latency_ms > 10
  for         = "0s"
  clear_after = "20s"
  throttle { read_iops = 100 }
}`))
		p := point("vm1", "vda", t0, 0)
		p.Rates.ReadLatencyMs = 50
		if ds := ev.Evaluate(t0, []sample.Point{p}); len(ds) != 1 || ds[0].Revert {
			t.Fatalf("did not fire: %+v", ds)
		}
		for i := 1; i < 20; i++ {
			now := t0.Add(time.Duration(i) * 10 * time.Second)
			var pts []sample.Point
			if i%2 == 0 { // every other step a sample with no reads: latency unknown
				q := point("vm1", "vda", now, 0)
				q.Rates.ReadLatencyMs = math.NaN()
				pts = append(pts, q)
			}
			for _, d := range ev.Evaluate(now, pts) {
				if d.Revert {
					t.Fatalf("reverted at step %d on missing or unknown data", i)
				}
			}
		}
		if st := ev.States(); len(st) != 1 || st[0].State != StateFiring {
			t.Fatalf("states %+v, want still firing", st)
		}
		ev.ForgetVM("vm1")
		if st := ev.States(); len(st) != 0 {
			t.Fatalf("states after the VM went: %+v", st)
		}
	})
}

func TestConflicts(t *testing.T) {
	set := mustParse(t, `
rule "loose" {
  when = disk.write_iops > 100
  for  = "0s"
  throttle { write_iops = 900 }
}
rule "tight" {
  when = disk.write_iops > 100
  for  = "0s"
  throttle {
    read_iops  = 100
    write_iops = 200
  }
}
rule "urgent" {
  match { domain = "vip-*" }
  when     = disk.write_iops > 100
  for      = "0s"
  priority = 10
  throttle { write_iops = 5000 }
}`)
	ev := NewEvaluator(set)
	ds := ev.Evaluate(t0, []sample.Point{point("vm1", "vda", t0, 500), point("vip-1", "vda", t0, 500)})
	if len(ds) != 2 {
		t.Fatalf("want one decision per disk, got %+v", ds)
	}
	for _, d := range ds {
		want := map[string]string{"vm1": "tight", "vip-1": "urgent"}[d.VM]
		if d.Rule != want {
			t.Errorf("%s: %s won, want %s", d.VM, d.Rule, want)
		}
	}
}

func TestWindowFunctions(t *testing.T) {
	ev := NewEvaluator(mustParse(t, `
rule "w" {
  when = p95_over(disk.write_iops, "50s") > 900 && min_over(disk.write_iops, "50s") >= 10 && p50_over(disk.write_iops, "50s") < 100
  for  = "0s"
  throttle { write_iops = 1 }
}`))
	vals := []float64{10, 20, 30, 1000, 40}
	var ds []Decision
	for i, v := range vals {
		now := t0.Add(time.Duration(i) * 10 * time.Second)
		ds = ev.Evaluate(now, []sample.Point{point("vm1", "vda", now, v)})
	}
	if len(ds) != 1 || ds[0].Inputs["p95_over(disk.write_iops,50s)"] != 1000 || ds[0].Inputs["min_over(disk.write_iops,50s)"] != 10 ||
		ds[0].Inputs["p50_over(disk.write_iops,50s)"] != 30 {
		t.Fatalf("decisions %+v", ds)
	}
	// 60 s later the 1000 has left the window: with clear_after 0 (it
	// defaults to for), the rule reverts at once.
	now := t0.Add(100 * time.Second)
	ds = ev.Evaluate(now, []sample.Point{point("vm1", "vda", now, 10)})
	if len(ds) != 1 || !ds[0].Revert {
		t.Fatalf("decisions %+v, want a revert", ds)
	}
	if st := ev.States(); len(st) != 0 {
		t.Fatalf("states %+v", st)
	}
}

func TestReloadKeepsStateOfUnchangedRules(t *testing.T) {
	set := mustParse(t, throttleRule)
	ev := NewEvaluator(set)
	run(t, ev, []float64{2000, 2000}) // pending since t0
	// Reload the same text (new objects, same definition) plus a new rule.
	ev.Update(t0.Add(15*time.Second), mustParse(t, throttleRule+`
rule "other" {
  when = disk.read_iops > 5
  cache { direct = true }
}`))
	now := t0.Add(30 * time.Second)
	ds := ev.Evaluate(now, []sample.Point{point("vm1", "vda", now, 2000)})
	if len(ds) != 1 || ds[0].Rule != "calm" {
		t.Fatalf("the pending timer did not survive the reload: %+v", ds)
	}
	// Removing the firing rule reverts its knob.
	reverts := ev.Update(now, mustParse(t, `
rule "other" {
  when = disk.read_iops > 5
  cache { direct = true }
}`))
	if len(reverts) != 1 || !reverts[0].Revert || reverts[0].Rule != "calm" || reverts[0].Knob != KnobThrottle {
		t.Fatalf("reverts %+v", reverts)
	}
}

func TestChangedRuleKeepsFiringWithNewAction(t *testing.T) {
	ev := NewEvaluator(mustParse(t, throttleRule))
	run(t, ev, []float64{2000, 2000, 2000, 2000})
	ev.Update(t0.Add(35*time.Second), mustParse(t, `
rule "calm" {
  when        = disk.write_iops > 1000
  for         = "30s"
  clear_after = "60s"
  throttle { write_iops = 250 }
}`))
	now := t0.Add(40 * time.Second)
	ds := ev.Evaluate(now, []sample.Point{point("vm1", "vda", now, 2000)})
	if len(ds) != 1 || ds[0].Action.Throttle.IOPSWrite != 250 {
		t.Fatalf("decisions %+v", ds)
	}
}

func TestPolicyTestReportsMismatch(t *testing.T) {
	set := mustParse(t, throttleRule)
	pt := PolicyTest{Name: "t", Interval: 10 * time.Second, Start: t0,
		Disks: []testDisk{{vm: "vm1", disk: "vda", series: map[string][]float64{"write_iops": {2000, 2000, 2000, 2000, 2000}}}},
		Expect: []Expectation{
			{At: 10 * time.Second, Rule: "calm", VM: "vm1", Disk: "vda", Decision: "apply"},
			{At: 30 * time.Second, Rule: "calm", VM: "vm1", Disk: "vda", Decision: "apply", Throttle: map[string]uint64{"write_iops": 999}},
		}}
	fails := pt.Run(set)
	if len(fails) != 2 {
		t.Fatalf("failures %v", fails)
	}
	if got := fails[0].String(); got != `test "t" at 10s: rule calm on vm1/vda: expected apply, got none (state pending since 11:59:50 (disk.write_iops=2000))` {
		t.Errorf("message: %s", got)
	}
	if got := fails[1].String(); got != `test "t" at 30s: rule calm on vm1/vda: throttle write_iops 300, expected 999` {
		t.Errorf("message: %s", got)
	}
}

func TestReloadIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.hcl", throttleRule)
	set, _, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ev := NewEvaluator(set)
	run(t, ev, []float64{2000, 2000, 2000, 2000}) // firing
	write("b.hcl", `rule "broken" { when = disk.nope > 1 }`)
	write("a.hcl", `rule "calm" { when = disk.write_iops > 1 throttle { write_iops = 1 } }`)
	_, problems, err := ev.Reload(t0.Add(time.Minute), dir)
	if err == nil || len(problems.Errors()) < 2 {
		t.Fatalf("broken reload accepted: %v", problems)
	}
	if ev.Set() != set {
		t.Fatal("a failed reload replaced the policy in force")
	}
	if st := ev.States(); len(st) != 1 || st[0].State != StateFiring {
		t.Fatalf("a failed reload touched rule state: %+v", st)
	}
}

func TestCensoredMetrics(t *testing.T) {
	tf, err := LoadTestFile("testdata/censor/naive.test.hcl")
	if err != nil {
		t.Fatal(err)
	}
	set, _, err := LoadPath("testdata/censor/naive.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range tf.Tests {
		t.Run(pt.Name, func(t *testing.T) {
			for _, f := range pt.Run(set) {
				t.Error(f)
			}
		})
	}
}
