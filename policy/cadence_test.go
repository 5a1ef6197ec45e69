package policy

import (
	"testing"
	"time"

	"github.com/qtune/qtune/internal/sample"
)

// cadenceRun evaluates every second; the disk is sampled at the seconds
// in at, each sample's rates covering the time since the one before,
// with the write IOPS loud(second) gives. It returns the second of the
// first apply and of the first revert (-1: none).
func cadenceRun(t *testing.T, src string, at []int, loud func(s int) float64, until int) (apply, revert int) {
	t.Helper()
	ev := NewEvaluator(mustParse(t, src))
	ev.MaxAge = 3 * time.Second
	apply, revert = -1, -1
	sampled := map[int]bool{}
	for _, s := range at {
		sampled[s] = true
	}
	prev := -1
	for s := 0; s <= until; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		var pts []sample.Point
		if sampled[s] {
			p := point("vm1", "vda", now, loud(s))
			if prev >= 0 {
				p.Rates.Interval = time.Duration(s-prev) * time.Second
			}
			prev = s
			pts = append(pts, p)
		}
		// A busy neighbour sampled every second keeps the evaluations
		// coming.
		b := point("vm2", "vda", now, 0)
		b.Rates.Interval = time.Second
		pts = append(pts, b)
		for _, d := range ev.Evaluate(now, pts) {
			if d.VM != "vm1" {
				continue
			}
			if d.Revert && revert < 0 {
				revert = s
			} else if !d.Revert && apply < 0 {
				apply = s
			}
		}
	}
	return apply, revert
}

func seconds(from, to, step int) []int {
	var out []int
	for s := from; s <= to; s += step {
		out = append(out, s)
	}
	return out
}

// A quiet VM sampled every 10 s whose one sample averages a loud burst
// over the whole gap: the rule goes pending, and fires only once `for`
// has passed in samples taken every second after it (the agent watches
// a VM with a pending rule), never on the long sample alone.
func TestQuietGapNeverFires(t *testing.T) {
	const rule = `
rule "calm" {
  when        = disk.write_iops > 200
  for         = "3s"
  clear_after = "5s"
  throttle { write_iops = 50 }
}`
	// Quiet every 10 s until 20, where the gap's average is loud; then
	// every second, loud until 40, calm after.
	at := append(seconds(0, 20, 10), seconds(21, 60, 1)...)
	loud := func(s int) float64 {
		if s >= 20 && s <= 40 {
			return 1000
		}
		return 10
	}
	apply, revert := cadenceRun(t, rule, at, loud, 60)
	// Pending from 19 (the evaluation before the long sample), so 3 s of
	// windows end at 22.
	if apply != 22 {
		t.Errorf("applied at %d s, want 22 (3 s of one-second samples after the long one)", apply)
	}
	// Calm from 41: clear_after 5 s of calm samples.
	if revert != 46 {
		t.Errorf("reverted at %d s, want 46", revert)
	}
	// The same loud gap alone, the VM staying quiet (no samples every
	// second after it): never fires.
	apply, _ = cadenceRun(t, rule, seconds(0, 60, 10), func(s int) float64 {
		if s == 20 {
			return 1000
		}
		return 10
	}, 60)
	if apply != -1 {
		t.Errorf("a lone long loud sample fired at %d s", apply)
	}
}

// A firing rule's calm sample after a long gap does not count the gap
// toward clear_after; gaps in its samples restart clear_after.
func TestQuietGapNeverClears(t *testing.T) {
	const rule = `
rule "calm" {
  when        = disk.write_iops > 200
  for         = "0s"
  clear_after = "5s"
  throttle { write_iops = 50 }
}`
	loud := func(s int) float64 {
		if s < 5 {
			return 1000
		}
		return 10
	}
	// Loud every second until 4, then calm samples only every 10 s.
	_, revert := cadenceRun(t, rule, append(seconds(0, 4, 1), seconds(14, 60, 10)...), loud, 60)
	if revert != -1 {
		t.Errorf("reverted at %d s on samples 10 s apart", revert)
	}
	// Calm every second from 5: reverts 5 s after the first calm sample.
	_, revert = cadenceRun(t, rule, seconds(0, 60, 1), loud, 60)
	if revert != 10 {
		t.Errorf("reverted at %d s, want 10", revert)
	}
}

// Window functions count in time: a sample covering 10 s weighs ten
// one-second samples.
func TestWindowsWeighSamplesByTheTimeTheyCover(t *testing.T) {
	h := newHistory()
	h.keep = time.Minute
	add := func(at time.Duration, span time.Duration, v float64) {
		k := "vm1\x00vda"
		h.series[k] = append(h.series[k], histPoint{at: t0.Add(at), span: span, vals: map[string]float64{"disk.write_iops": v}})
	}
	add(10*time.Second, 10*time.Second, 100) // quiet 10 s at 100
	for s := 11; s <= 20; s++ {              // then ten 1 s samples at 0
		add(time.Duration(s)*time.Second, time.Second, 0)
	}
	now := t0.Add(20 * time.Second)
	avg := h.window("vm1", "vda", windowSite{fn: "avg_over", metric: "disk.write_iops", window: 20 * time.Second}, now)
	if avg != 50 {
		t.Errorf("avg_over 20s = %v, want 50 (10 s at 100, 10 s at 0)", avg)
	}
	// A window cutting into the long sample counts only its part.
	avg = h.window("vm1", "vda", windowSite{fn: "avg_over", metric: "disk.write_iops", window: 15 * time.Second}, now)
	if avg != 100.0*5/15 {
		t.Errorf("avg_over 15s = %v, want %v", avg, 100.0*5/15)
	}
	p50 := h.window("vm1", "vda", windowSite{fn: "p95_over", metric: "disk.write_iops", window: 20 * time.Second}, now)
	if p50 != 100 {
		t.Errorf("p95_over 20s = %v, want 100 (half the time at 100)", p50)
	}
	p50 = h.window("vm1", "vda", windowSite{fn: "p50_over", metric: "disk.write_iops", window: 20 * time.Second}, now)
	if p50 != 0 {
		t.Errorf("p50_over 20s = %v, want 0", p50)
	}
}
