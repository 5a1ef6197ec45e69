package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

// A sample's rates cover the interval before it, so `for` counts from the
// start of the first window that found the condition true: with samples
// a second apart, for = "2s" takes two loud samples, not three.
func TestForCountsFromTheStartOfTheFirstTrueWindow(t *testing.T) {
	const rule = `
rule "calm" {
  when = disk.write_iops > 200
  for  = "%s"
  throttle { write_iops = 50 }
}`
	cases := []struct {
		name, for_ string
		// offsets of the sample times from t0, and whether each is loud
		at   []time.Duration
		loud []bool
		want int // index of the sample whose evaluation applies; -1 none
	}{
		{"two loud samples a second apart", "2s", secs(0, 1, 2, 3), []bool{false, true, true, true}, 2},
		{"one loud sample is not enough", "2s", secs(0, 1, 2, 3), []bool{false, true, false, true}, -1},
		// The sample before the first loud one was taken late and the
		// second loud one early: 1.85 s of windows, within a quarter of
		// the last window of the 2 s.
		{"timer jitter does not cost a cycle", "2s", []time.Duration{100 * time.Millisecond, 1000 * time.Millisecond, 1950 * time.Millisecond, 3000 * time.Millisecond},
			[]bool{false, true, true, true}, 2},
		{"for of three intervals is not two samples", "3s", secs(0, 1, 2, 3, 4), []bool{false, true, true, false, false}, -1},
		{"for of three intervals takes three samples", "3s", secs(0, 1, 2, 3, 4), []bool{false, true, true, true, false}, 3},
		{"for within one interval takes one sample", "1s", secs(0, 1, 2), []bool{false, true, false}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := NewEvaluator(mustParse(t, fmt.Sprintf(rule, c.for_)))
			got := -1
			var prev time.Time
			for i, off := range c.at {
				at := t0.Add(off)
				p := point("vm1", "vda", at, 10)
				if c.loud[i] {
					p.Rates.WriteIOPS = 1000
				}
				if i > 0 {
					p.Rates.Interval = at.Sub(prev)
				}
				prev = at
				// The agent reads its clock just before it samples.
				if ds := ev.Evaluate(at.Add(-20*time.Millisecond), []sample.Point{p}); len(ds) > 0 && got < 0 {
					got = i
				}
			}
			if got != c.want {
				t.Errorf("applied at sample %d, want %d", got, c.want)
			}
		})
	}
}

// A rate measured over a gap in the samples (the VM did not answer for a
// while) is an average over the gap: it counts toward `for` only from the
// evaluation before it, never for the whole gap.
func TestForDoesNotCountAGapAsHeld(t *testing.T) {
	set := mustParse(t, `
rule "calm" {
  when = disk.write_iops > 200
  for  = "3s"
  throttle { write_iops = 50 }
}`)
	ev := NewEvaluator(set)
	ev.Evaluate(t0, []sample.Point{point("vm1", "vda", t0, 10)})
	for s := 1; s < 10; s++ { // no sample of the disk for 9 s
		ev.Evaluate(t0.Add(secs(s)[0]), nil)
	}
	at := t0.Add(10 * time.Second)
	p := point("vm1", "vda", at, 1000)
	p.Rates.Interval = 10 * time.Second
	if ds := ev.Evaluate(at, []sample.Point{p}); len(ds) != 0 {
		t.Fatalf("one loud sample after a gap acted: %+v", ds)
	}
	for s := 11; s <= 12; s++ {
		at := t0.Add(secs(s)[0])
		p := point("vm1", "vda", at, 1000)
		p.Rates.Interval = time.Second
		ds := ev.Evaluate(at, []sample.Point{p})
		if want := s == 12; (len(ds) == 1) != want {
			t.Fatalf("at %ds: decisions %+v, want apply %v", s, ds, want)
		}
	}
}

func secs(s ...int) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v) * time.Second
	}
	return out
}
