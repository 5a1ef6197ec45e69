package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/loadgen"
)

// Noisy neighbour: a victim guest reads 4 KiB at random, 200 times a
// second, from an allocated image; its own load generator times every
// read. Measured three ways in one run: alone, beside a culprit guest
// writing 1 MiB blocks as fast as it can to an image on the same host
// filesystem, and beside the same culprit with the agent running the
// shipped example policy examples/policy.d/protect-neighbours.hcl,
// unchanged: its condition is relative to the victim's own normal, which
// the agent learns in the first phase, so nothing in it is set for this
// host.

const neighbourPolicyFile = "examples/policy.d/protect-neighbours.hcl"

// neighbourAgentConfig turns on QEMU's latency histograms, so the shipped
// policy watches the victim's p99 (without them, its average).
const neighbourAgentConfig = `
histograms {
  enabled = true
}
`

// neighbourPhase is the victim's reads over one phase.
type neighbourPhase struct {
	name     string
	p50, p99 time.Duration
	reads    uint64
	culprit  float64 // the culprit's mean IOPS over the phase
	agentLat float64 // median of the victim's read latency (ms) as the agent saw it
	agentP99 float64 // median of the victim's read p99 (ms) from QEMU's histograms
	devUtil  float64 // median of the busy share of the images' host device
	// throttled is the culprit's throttle, nil if none came within waited.
	throttled *api.ActionStatus
	waited    time.Duration
}

type neighbourResult struct {
	phases    []neighbourPhase
	victimHit bool // the victim was acted on
}

func neighbour(ctx context.Context, o options) (string, error) {
	// The agent learns the victim's normal from ten samples at least:
	// quick mode gives the victim alone more than its other phases.
	phase, learn := 6*time.Second, 10*time.Second
	if o.full {
		phase, learn = 40*time.Second, 40*time.Second
	}
	policy, err := os.ReadFile(neighbourPolicyFile)
	if err != nil {
		return "", fmt.Errorf("the shipped policy (run from the repository root): %w", err)
	}
	dir, err := os.MkdirTemp("", "qtune-bench-neigh-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	r, err := measureNeighbour(ctx, o, dir, string(policy), phase, learn)
	if err != nil {
		return "", err
	}
	if err := writePlot(o, "neighbour.png", neighbourChart(r)); err != nil {
		return "", err
	}
	return neighbourTable(r, phase, learn), nil
}

// neighbourRun is the state of one neighbour measurement.
type neighbourRun struct {
	victim, culprit *guest
	agent           *benchAgent
	policyDir       string
	phase, learn    time.Duration // each phase; the first, alone
	r               neighbourResult
}

// measureNeighbour runs the victim alone, then beside the loud culprit
// with the shipped policy as it is, then beside the loud culprit with no
// policy. The agent runs from the start with no rule, seeing the victim's
// latency and learning its normal.
func measureNeighbour(ctx context.Context, o options, dir, policy string, phase, learn time.Duration) (neighbourResult, error) {
	n := &neighbourRun{phase: phase, learn: learn}
	victimImg, culpritImg := filepath.Join(dir, "victim.qcow2"), filepath.Join(dir, "culprit.qcow2")
	for img, size := range map[string]uint64{victimImg: 32 << 20, culpritImg: 256 << 20} {
		// Allocated data: reads of unallocated clusters never reach the device.
		if err := lab.CreateImage(ctx, img, "qcow2", size, lab.ImageOpts{Preallocation: "full"}); err != nil {
			return n.r, err
		}
	}
	vw := loadgen.Defaults()
	vw.Loops, vw.Span = 0, 16<<20
	vw.Phases = []loadgen.Phase{{Pattern: loadgen.RandRead, Rate: 200, Duration: time.Hour}}
	var err error
	if n.victim, err = startGuest(ctx, "victim", vw, lab.Disk{ID: "disk0", Image: victimImg, CacheDirect: true}); err != nil {
		return n.r, err
	}
	defer n.victim.close()
	if n.agent, err = startAgent(ctx, o, dir, neighbourAgentConfig, nil, n.victim); err != nil {
		return n.r, err
	}
	defer n.agent.stop()
	n.policyDir = filepath.Join(dir, "policy")
	if err := n.measure(ctx, "alone", "", 0); err != nil {
		return n.r, err
	}
	cw := loadgen.Defaults()
	cw.Loops, cw.Span, cw.BlockSize, cw.QueueDepth = 0, 250<<20, 1<<20, 8
	cw.Phases = []loadgen.Phase{{Pattern: loadgen.RandWrite, Duration: time.Hour}}
	if n.culprit, err = startGuest(ctx, "culprit", cw, lab.Disk{ID: "disk0", Image: culpritImg, CacheDirect: true}); err != nil {
		return n.r, err
	}
	defer n.culprit.close()
	if err := os.Symlink(n.culprit.vm.QMPPath(), filepath.Join(dir, "sockets", "culprit.sock")); err != nil {
		return n.r, err
	}
	// The policy first, as the culprit turns loud: the victim's normal is
	// then what it was alone, as on a host where qtune runs all along. The
	// rule's 10 s median and its 10 s "for": give it those, a few
	// intervals and slack.
	if err := n.measure(ctx, "loud neighbour, shipped policy", policy, 45*time.Second); err != nil {
		return n.r, err
	}
	if s, err := n.agent.status(); err == nil {
		n.r.victimHit = lastAction(s, "victim", "applied") != nil
	}
	// Then the policy removed (the throttle goes back) and the culprit
	// loud beside the victim.
	if err := n.release(ctx); err != nil {
		return n.r, err
	}
	if err := n.measure(ctx, "loud neighbour", "", 0); err != nil {
		return n.r, err
	}
	// In the table: alone, loud, with the policy.
	ph := n.r.phases
	ph[1], ph[2] = ph[2], ph[1]
	return n.r, nil
}

// measure loads policy (when given) and waits up to wait for the
// culprit's throttle, then times the victim's reads for a phase.
func (n *neighbourRun) measure(ctx context.Context, name, policy string, wait time.Duration) error {
	p := neighbourPhase{name: name}
	if policy != "" {
		if err := n.release(ctx); err != nil {
			return err
		}
		path := filepath.Join(n.policyDir, "protect-neighbours.hcl")
		if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
			return err
		}
		start := time.Now()
		s, _ := n.agent.waitFor(ctx, wait, func(s api.Status) bool {
			a := lastAction(s, "culprit", "applied")
			return a != nil && a.At.After(start)
		})
		if a := lastAction(s, "culprit", "applied"); a != nil && a.At.After(start) {
			p.throttled = a
		}
		p.waited = time.Since(start)
	}
	from := time.Now()
	d := n.phase
	if n.culprit == nil {
		d = n.learn // alone: the agent learns the victim's normal
	}
	read, _, _, err := n.victim.measure(ctx, d)
	if err != nil {
		return err
	}
	p.p50, p.p99, p.reads = read.Quantile(0.5), read.Quantile(0.99), read.Count()
	if n.culprit != nil {
		_, _, p.culprit = n.culprit.window(from.Add(time.Second), time.Now())
	}
	p.agentLat, p.agentP99, p.devUtil = n.agentLatency(from)
	n.r.phases = append(n.r.phases, p)
	return nil
}

// release removes the policy, so that the next one starts from an
// unthrottled culprit, and waits for the throttle to be lifted.
func (n *neighbourRun) release(ctx context.Context) error {
	path := filepath.Join(n.policyDir, "protect-neighbours.hcl")
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	_, err := n.agent.waitFor(ctx, 20*time.Second, func(s api.Status) bool {
		a, r := lastAction(s, "culprit", "applied"), lastAction(s, "culprit", "reverted")
		return a == nil || (r != nil && r.At.After(a.At))
	})
	return err
}

// agentLatency is the median over the cycles since from of the victim's
// mean and p99 read latency as the agent saw them, and of its image
// device's busy share, or 0 for each it did not see.
func (n *neighbourRun) agentLatency(from time.Time) (mean, p99, util float64) {
	var h []api.Cycle
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.agent.addr + "/v1/history")
	if err != nil {
		return 0, 0, 0
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return 0, 0, 0
	}
	var lat, tail, busy []float64
	keep := func(to *[]float64, v float64) {
		if !math.IsNaN(v) {
			*to = append(*to, v)
		}
	}
	for _, cy := range h {
		for _, p := range cy.Points {
			if cy.At.After(from) && p.Disk.VM == "victim" {
				keep(&lat, p.Rates.ReadLatencyMs)
				keep(&tail, p.Rates.ReadP99Ms)
				keep(&busy, p.Disk.HostDevUtil)
			}
		}
	}
	return median(lat), median(tail), median(busy)
}

func neighbourTable(r neighbourResult, phase, learn time.Duration) string {
	var b bytes.Buffer
	b.WriteString("## Noisy neighbour\n\n")
	fmt.Fprintf(&b, "Two guests with qcow2 images (preallocated, cache.direct) on the same host filesystem. The victim reads 4 KiB at random 200 times a second; its load generator times each read and the figures come from the merged histograms (buckets about 19%% wide) of %s per phase%s. The culprit writes 1 MiB blocks at random, 8 in flight, as fast as it can. The agent runs throughout, every second with QEMU's latency histograms on, first with no rule (it learns the victim's normal read latency from its own samples). As the culprit starts, the shipped `%s` is loaded as it is: the 10 s median of a neighbour's p99 (or average) read latency over its normal (the median of its recent samples) above 3 (2.5) for 10 s, with the disk doing more than half of the device's writes, throttles that disk to 10 MiB/s. Nothing in it is set for this host. Then the policy is removed, the throttle goes back, and the victim is measured beside the loud culprit (the table shows it second). Baseline: the victim alone, measured first in the same run. The agent's view is the median over the phase of the victim's per-second average and p99 read latency (QEMU's accounting and histograms), and of the busy share of the images' host device.\n\n", phase, aloneNote(phase, learn), neighbourPolicyFile)
	b.WriteString("| phase | victim reads | read p50 | read p99 | p99 / alone | agent's view: average / p99 | device busy | culprit IOPS | culprit throttled |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	alone := r.phases[0].p99
	for _, p := range r.phases {
		culprit, throttled := "—", "—"
		if p.culprit > 0 {
			culprit = fmt.Sprintf("%.0f", p.culprit)
		}
		if p.throttled != nil {
			throttled = fmt.Sprintf("after %s", p.waited.Round(time.Second))
		} else if p.waited > 0 {
			throttled = fmt.Sprintf("no, within %s", p.waited.Round(time.Second))
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f ms | %.2f ms | %.2f× | %.2f / %.2f ms | %.2f | %s | %s |\n", p.name, p.reads, msf(p.p50), msf(p.p99),
			ratio(msf(p.p99), msf(alone)), p.agentLat, p.agentP99, p.devUtil, culprit, throttled)
	}
	b.WriteString("\n![victim read latency p50 and p99 per phase](neighbour.png)\n\n")
	b.WriteString("Plot: victim read p50 (blue) and p99 (orange) per phase, left to right as in the table; the grey line is the goal, 1.5× the p99 alone.\n\n")
	b.WriteString(neighbourReading(r))
	return b.String()
}

// aloneNote says when the first phase is longer than the others.
func aloneNote(phase, learn time.Duration) string {
	if learn == phase {
		return ""
	}
	return fmt.Sprintf(" (%s alone, long enough for the agent to learn the victim's normal)", learn)
}

func neighbourReading(r neighbourResult) string {
	alone, loud, tuned := r.phases[0], r.phases[1], r.phases[len(r.phases)-1]
	var b bytes.Buffer
	fmt.Fprintf(&b, "Reading: the loud neighbour took the victim's read p99 from %.2f ms to %.2f ms (%.2f×); the agent saw the victim's p99 go from %.2f ms to %.2f ms and its average from %.2f ms to %.2f ms. ",
		msf(alone.p99), msf(loud.p99), ratio(msf(loud.p99), msf(alone.p99)), alone.agentP99, loud.agentP99, alone.agentLat, loud.agentLat)
	for _, p := range r.phases[2:] {
		if p.throttled == nil {
			fmt.Fprintf(&b, "With %s the culprit was not throttled within %s. ", strings.TrimPrefix(p.name, "loud neighbour, "), p.waited.Round(time.Second))
		} else {
			fmt.Fprintf(&b, "With %s the culprit was throttled %s after the policy loaded (%s). ", strings.TrimPrefix(p.name, "loud neighbour, "), p.waited.Round(time.Second), strings.Join(strings.Fields(p.throttled.Reason), " "))
		}
	}
	switch {
	case tuned.throttled == nil:
		fmt.Fprintf(&b, "The culprit was never throttled, so the last phase (victim p99 %.2f ms, %.2f× alone) says nothing about qtune: the goal of ≤ 1.5× is not shown. ", msf(tuned.p99), ratio(msf(tuned.p99), msf(alone.p99)))
		fmt.Fprintf(&b, "The agent's view of the victim's p99 moved from %.2f to %.2f ms with the neighbour (%.2f×, the rule needs 3× its normal held for 10 s); on this shared machine the victim's latency moves with the load of the other work as much as with the neighbour.", alone.agentP99, loud.agentP99, ratio(loud.agentP99, alone.agentP99))
	case msf(tuned.p99) <= 1.5*msf(alone.p99):
		fmt.Fprintf(&b, "With the culprit throttled the victim's p99 was %.2f ms, %.2f× alone: the goal of ≤ 1.5× is met.", msf(tuned.p99), ratio(msf(tuned.p99), msf(alone.p99)))
	default:
		fmt.Fprintf(&b, "With the culprit throttled the victim's p99 was %.2f ms, %.2f× alone: the goal of ≤ 1.5× is not met.", msf(tuned.p99), ratio(msf(tuned.p99), msf(alone.p99)))
	}
	if r.victimHit {
		b.WriteString(" The victim itself was acted on, which the policy should never do.")
	}
	b.WriteString("\n")
	return b.String()
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func neighbourChart(r neighbourResult) barChart {
	c := barChart{series: []string{"p50", "p99"}, ref: 1.5 * msf(r.phases[0].p99)}
	for _, p := range r.phases {
		c.groups = append(c.groups, barGroup{label: p.name, values: []float64{msf(p.p50), msf(p.p99)}})
	}
	return c
}
