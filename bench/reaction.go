package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// Reaction: how long from a guest's write rate crossing a rule's
// threshold to the throttle in force in QEMU. The guest alternates loud
// (as fast as it can) and idle phases; the agent runs a rule with a short
// "for"; the benchmark watches the disk through its own QMP monitor every
// 50 ms and times each trial from the first 50 ms in which the write rate
// was over the threshold to the first poll showing the throttle in
// query-block, and to the first 500 ms window whose write rate was within
// the limit (the throttle seen working in query-blockstats).

const (
	reactThreshold = 200
	reactLimit     = 50
	reactFor       = 2 * time.Second
	reactInterval  = time.Second
	reactPoll      = 50 * time.Millisecond
	// A loud phase outlasts the reaction; the idle one outlasts the
	// release (a sample, clear_after and a cycle), so every loud phase
	// starts a trial on an unthrottled disk. The 350 ms keeps the period
	// off a whole number of intervals: the onsets fall at every point of
	// the agent's cycle, not always at the same one.
	reactLoud = 5 * time.Second
	reactIdle = 6*time.Second + 350*time.Millisecond
)

// reactionAgentConfig lifts the executor's per-VM rate limit (12 changes
// an hour by default), which every trial's apply and revert count
// against: 20 trials are 40 changes.
const reactionAgentConfig = `
limits {
  per_vm_per_hour = 1000
}
`

var reactionPolicy = fmt.Sprintf(`
rule "calm-noisy-writers" {
  when        = disk.write_iops > %d
  for         = "%s"
  clear_after = "2s"
  cooldown    = "1s"
  throttle { write_iops = %d }
}
`, reactThreshold, reactFor, reactLimit)

// trial is one loud onset.
type trial struct {
	set, held time.Duration // onset to throttle in query-block, to rate within the limit
	// broke: before the throttle came, the guest's write rate over a
	// whole interval (1 s) fell below the threshold, which breaks the
	// rule's `for` as well.
	broke bool
}

func reaction(ctx context.Context, o options) (string, error) {
	n := 2 // quick: a glimpse; the distribution needs -full
	if o.full {
		n = 20
	}
	dir, err := os.MkdirTemp("", "qtune-bench-react-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "react.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		return "", err
	}
	w := loadgen.Defaults()
	w.Loops, w.Span = 0, 32<<20
	w.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Duration: reactLoud}, {Pattern: loadgen.Idle, Duration: reactIdle}}
	g, err := startGuest(ctx, "react", w, lab.Disk{ID: "disk0", Image: img, CacheDirect: true})
	if err != nil {
		return "", err
	}
	defer g.close()
	a, err := startAgent(ctx, o, dir, reactionAgentConfig, map[string]string{"react.hcl": reactionPolicy}, g)
	if err != nil {
		return "", err
	}
	defer a.stop()
	trials, err := watchTrials(ctx, g, n, time.Duration(n+3)*(reactLoud+reactIdle))
	if err != nil {
		return "", err
	}
	if s, err := a.status(); err == nil {
		for _, act := range s.Actions {
			if act.Result != "applied" && act.Result != "reverted" {
				fmt.Fprintf(os.Stderr, "reaction: agent action %s %s: %s %s\n", act.At.Format("15:04:05.0"), act.Result, act.Reason, act.Error)
			}
		}
	}
	return reactionTable(trials, n), nil
}

// watchTrials polls the guest's disk until n trials are timed or limit
// passes. A trial is armed only while the disk is unthrottled and quiet,
// so every onset is a fresh one.
func watchTrials(ctx context.Context, g *guest, n int, limit time.Duration) ([]trial, error) {
	var trials []trial
	var prev blockState
	var onset, setAt time.Time
	armed, broke := false, false
	var second []blockState // the last interval, for the broke check
	var window []blockState // the last 500 ms, for the held check
	deadline := time.Now().Add(limit)
	for len(trials) < n && time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return trials, ctx.Err()
		}
		time.Sleep(reactPoll)
		st, err := g.blockState(ctx)
		if err != nil {
			return trials, err
		}
		window, second = append(window, st), append(second, st)
		for len(window) > 1 && st.at.Sub(window[0].at) > 500*time.Millisecond {
			window = window[1:]
		}
		for len(second) > 1 && st.at.Sub(second[0].at) > reactInterval {
			second = second[1:]
		}
		if prev.at.IsZero() {
			prev = st
			continue
		}
		rate := float64(st.wrOps-prev.wrOps) / st.at.Sub(prev.at).Seconds()
		switch {
		case st.iopsWrLimit == 0 && rate < reactThreshold/4 && onset.IsZero():
			armed = true
		case armed && onset.IsZero() && rate > reactThreshold:
			onset = prev.at // the rate crossed somewhere in this poll
		case !onset.IsZero() && setAt.IsZero() && st.iopsWrLimit > 0:
			setAt = st.at
		case !onset.IsZero() && setAt.IsZero() && second[0].at.After(onset) && st.at.Sub(second[0].at) >= reactInterval*9/10 &&
			float64(st.wrOps-second[0].wrOps)/st.at.Sub(second[0].at).Seconds() < reactThreshold:
			broke = true
		case !setAt.IsZero() && st.at.Sub(window[0].at) >= 400*time.Millisecond &&
			float64(st.wrOps-window[0].wrOps)/st.at.Sub(window[0].at).Seconds() <= reactLimit*1.1:
			trials = append(trials, trial{set: setAt.Sub(onset), held: st.at.Sub(onset), broke: broke})
			fmt.Fprintf(os.Stderr, "reaction: trial %d: onset %s, throttle after %s, broke %v\n", len(trials), onset.Format("15:04:05.00"), setAt.Sub(onset).Round(10*time.Millisecond), broke)
			onset, setAt, armed, broke = time.Time{}, time.Time{}, false, false
		}
		prev = st
	}
	if len(trials) == 0 {
		return nil, fmt.Errorf("no trial completed within %v", limit)
	}
	return trials, nil
}

func reactionTable(trials []trial, want int) string {
	target := reactFor + reactInterval + 100*time.Millisecond
	var b bytes.Buffer
	b.WriteString("## Reaction time\n\n")
	fmt.Fprintf(&b, "One guest alternating %s of 4 KiB random writes as fast as it can (cache.direct) with %s idle; the agent every %s with `when = disk.write_iops > %d`, `for = \"%s\"`, `clear_after = \"2s\"`, `throttle { write_iops = %d }`, its per-VM rate limit raised so that every trial's apply and revert are allowed (the default, 12 changes an hour, stops after six trials). The throttle is released in each idle phase, so every trial starts from an unthrottled, quiet disk. Each trial runs from the first 50 ms in which the guest's write rate (query-blockstats, polled every 50 ms on a second QMP monitor) was over the threshold to the first poll showing the throttle in query-block, and to the first 500 ms window whose write rate was within 110%% of the limit. A trial in which the guest's write rate over a whole interval (1 s) fell below the threshold before the throttle came broke the rule's `for` as well (on this shared machine the guest's vCPU is not always scheduled): such trials are counted, and left out of the rows marked unbroken. Baseline: the rule's own bound, `for` + one interval + 100 ms = %s. A sample covers the interval before it and `for` counts from the start of the first true one (docs/policy.md), so the expected range is `for` − one interval to `for`, plus the time to sample and apply. The loud and idle phases together are not a whole number of intervals, so the onsets fall at every point of the agent's cycle.\n\n", reactLoud, reactIdle, reactInterval, reactThreshold, reactFor, reactLimit, target)
	b.WriteString("| trials | to | min | p50 | p90 | max | within the bound | p90 / bound |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	var unbroken []trial
	for _, t := range trials {
		if !t.broke {
			unbroken = append(unbroken, t)
		}
	}
	row := func(label string, ts []trial, to string, pick func(trial) time.Duration) {
		var ds []time.Duration
		within := 0
		for _, t := range ts {
			ds = append(ds, pick(t))
			if pick(t) <= target {
				within++
			}
		}
		if len(ds) == 0 {
			return
		}
		s := summarize(ds)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d of %d | %.2f× |\n", label, to, ms(s.min), ms(s.p50), ms(s.p90), ms(s.max), within, len(ds), ratio(s.p90.Seconds(), target.Seconds()))
	}
	set, held := func(t trial) time.Duration { return t.set }, func(t trial) time.Duration { return t.held }
	all, ok := fmt.Sprintf("%d of %d", len(trials), want), fmt.Sprintf("%d unbroken", len(unbroken))
	broken := len(trials) - len(unbroken)
	if broken == 0 {
		unbroken = nil // the same rows twice otherwise
	}
	row(all, trials, "throttle in query-block", set)
	row(ok, unbroken, "throttle in query-block", set)
	row(all, trials, "rate within the limit", held)
	row(ok, unbroken, "rate within the limit", held)
	b.WriteString("\n" + reactionReading(trials, unbroken, broken, want))
	return b.String()
}

func reactionReading(trials, unbroken []trial, broken, want int) string {
	var set, ok []time.Duration
	for _, t := range trials {
		set = append(set, t.set)
	}
	for _, t := range unbroken {
		ok = append(ok, t.set)
	}
	s, u := summarize(set), summarize(ok)
	var b bytes.Buffer
	fmt.Fprintf(&b, "Reading: %d of %d trials completed; the throttle was in force a median %s after the guest crossed the threshold (min %s, max %s; the expected range is %s to %s plus sampling and applying).",
		len(trials), want, ms(s.p50), ms(s.min), ms(s.max), reactFor-reactInterval, reactFor)
	if broken > 0 {
		fmt.Fprintf(&b, " In %d trials the guest's own write rate fell below the threshold over a whole interval before the throttle came.", broken)
	}
	if len(unbroken) > 0 {
		fmt.Fprintf(&b, " The %d unbroken ones took %s to %s (median %s).", len(unbroken), ms(u.min), ms(u.max), ms(u.p50))
	}
	b.WriteString(" The load average under the section says how busy the machine was.")
	if len(trials) < want {
		fmt.Fprintf(&b, " Only %d of %d trials completed in the time allowed (%d loud phases): a trial starts only from an unthrottled, quiet disk.", len(trials), want, want+3)
	}
	b.WriteString("\n")
	return b.String()
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f s", d.Seconds())
}
