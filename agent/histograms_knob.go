package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// Latency histograms are a knob like the others (tuning's histogram
// kind): each one qtune turns on is written to the state store before
// the call, so that after a restart it is found again and turned off when
// no rule in force needs it. What drives the knob is not a rule's action
// but HistogramStatus: while it says on, every sampled disk without a
// histogram gets one; while it says off, the disks qtune gave one lose
// it. A disk that had a histogram before qtune looked is never owned.
//
//	no record ──(wanted, disk has none)──> intent ──(set, read back)──> applied (held)
//	applied ──(no longer wanted; a clean policy)──> off again, record gone (settled)
//	applied ──(changed or removed by someone else)──> released (drifted) ──(not wanted)──> record gone

// syncHistograms brings the sampled disks' histograms in line with the
// set in force, after reconciliation has resolved what a restart left.
func (a *Agent) syncHistograms(ctx context.Context, now time.Time, disks []sample.Disk) {
	a.mu.Lock()
	st := a.status.Histograms
	a.mu.Unlock()
	owned, _ := a.store.AllOwned() // a bad record is reported by reconcileOwned
	recs := map[state.Target]state.Owned{}
	for _, o := range owned {
		if o.Knob == policy.KnobHistogram {
			recs[o.Target] = o
		}
	}
	reads := a.readsHistograms()
	for _, d := range disks {
		t := state.Target{VM: d.VM, Disk: d.Name}
		if o, ok := recs[t]; ok {
			delete(recs, t) // a disk listed twice is handled once
			a.holdHistogram(ctx, now, st, o, d)
			continue
		}
		if st.On && reads && !hasHistogram(d) && !a.knownForeign(t) && a.offersHistograms(d.VM) {
			a.histogramAction(ctx, now, st, t, "")
		}
	}
}

// holdHistogram keeps, settles or releases one owned histogram.
func (a *Agent) holdHistogram(ctx context.Context, now time.Time, st api.HistogramStatus, o state.Owned, d sample.Disk) {
	k := ownedKey(o)
	switch {
	case st.On && o.Phase == state.PhaseReleased:
		a.unorphan(k) // drifted: left as someone else set it
	case st.On && o.Phase == state.PhaseApplied && sameHistogram(d, tuning.Histogram(o.Applied)):
		a.unorphan(k)
	case st.On:
		// A change a crash or a failure left unsettled, or a histogram
		// the sample shows otherwise than qtune set it: the executor
		// reads it and settles (applied, set again on a new QEMU
		// process, or drift).
		a.histogramAction(ctx, now, st, o.Target, o.Rule)
	case a.cfg.HistogramsEnabled == nil && !a.rulesCanBeRemoved():
		a.recon.orphaned(k, now, "no rule in force needs latency histograms, but no policy that loaded cleanly says the rules that did were removed")
	default:
		a.releaseHistogram(ctx, now, o)
	}
}

// histogramAction turns a disk's histogram on (or settles its record)
// through the executor, retried with backoff after a failure.
func (a *Agent) histogramAction(ctx context.Context, now time.Time, st api.HistogramStatus, t state.Target, rule string) {
	k := t.String() + "/" + string(policy.KnobHistogram)
	if g := a.recon.retry[k]; now.Before(g.next) {
		return
	}
	if rule == "" {
		rule = histogramRule(st)
	}
	bounds := a.cfg.Histograms
	if len(bounds) == 0 { // no boundaries would make the set a removal
		bounds = config.Defaults().Histograms
	}
	d := policy.Decision{At: now, Rule: rule, VM: t.VM, Disk: t.Disk, Knob: policy.KnobHistogram, Mode: policy.ModeEnforce,
		Action: policy.Action{Other: &policy.HistogramSpec{Boundaries: slices.Clone(bounds)}},
		Reason: "latency histograms wanted (" + st.Why + ")"}
	act := a.execute(ctx, d)
	a.recon.actions = append(a.recon.actions, act)
	o, err := a.store.Owned(t, policy.KnobHistogram)
	switch {
	case err != nil:
		return
	case o == nil && act.Result == string(state.ResultNoOp):
		// The disk has a histogram someone else set: never owned, and
		// not read again while its VM runs.
		a.recon.foreignHist[t.String()] = a.vmIdentity(t.VM)
	case act.Error != "" && (o == nil || o.Phase != state.PhaseReleased):
		a.histogramRetry(k, now, fmt.Sprintf("latency histogram not set yet (%s %s)", act.Result, act.Error))
	default:
		delete(a.recon.retry, k)
		a.unorphan(k)
	}
}

// releaseHistogram turns off a histogram qtune turned on (or drops the
// record of one someone else took over), retried with backoff.
func (a *Agent) releaseHistogram(ctx context.Context, now time.Time, o state.Owned) {
	k := ownedKey(o)
	if g := a.recon.retry[k]; now.Before(g.next) {
		a.recon.orphaned(k, now, fmt.Sprintf("no rule needs latency histograms; turning this one off failed, next try at %s", g.next.Format(time.RFC3339)))
		return
	}
	d := policy.Decision{At: now, Rule: o.Rule, VM: o.VM, Disk: o.Disk, Knob: o.Knob, Revert: true, Mode: policy.ModeEnforce,
		Reason: "no rule in force needs latency histograms"}
	act := a.execute(ctx, d)
	a.recon.actions = append(a.recon.actions, act)
	if a.isGone(o) {
		delete(a.recon.retry, k)
		a.settle(k)
		return
	}
	a.histogramRetry(k, now, fmt.Sprintf("no rule needs latency histograms; not turned off yet (%s %s)", act.Result, act.Error))
}

func (a *Agent) histogramRetry(k string, now time.Time, why string) {
	g := a.recon.retry[k]
	g.n++
	g.next = now.Add(backoff(g.n, rand.Float64()))
	a.recon.retry[k] = g
	a.recon.orphaned(k, now, why)
}

// histogramState is an owned histogram's state in status: held while
// histograms are wanted, releasing (off at the next cycle) otherwise.
func histogramState(st api.HistogramStatus) (string, string) {
	if st.On {
		return api.OwnedHeld, "latency histograms wanted (" + st.Why + ")"
	}
	return api.OwnedReleasing, "latency histograms no longer wanted (" + st.Why + "): turned off at the next cycle"
}

// histogramRule is the record's rule: the rule that needs histograms, or
// "config" when histograms { enabled = true } keeps them on.
func histogramRule(st api.HistogramStatus) string {
	if r, ok := strings.CutPrefix(st.Why, "rule "); ok {
		return r
	}
	return st.Why
}

// knownForeign says whether t was found with someone else's histogram on
// the QEMU process that runs its VM now.
func (a *Agent) knownForeign(t state.Target) bool {
	was, ok := a.recon.foreignHist[t.String()]
	if !ok {
		return false
	}
	if cur := a.vmIdentity(t.VM); was.Differs(cur) || was.OtherProcess(cur) {
		delete(a.recon.foreignHist, t.String())
		return false
	}
	return true
}

func hasHistogram(d sample.Disk) bool { return d.ReadHist != nil || d.WriteHist != nil }

// sameHistogram says whether the sample shows the read and write
// histograms h says (the sample has no flush histogram).
func sameHistogram(d sample.Disk, h tuning.HistogramState) bool {
	same := func(s *sample.Histogram, b *[]uint64) bool {
		if s == nil || b == nil {
			return s == nil && b == nil
		}
		return slices.Equal(s.Boundaries, *b)
	}
	return h.On && same(d.ReadHist, h.Read) && same(d.WriteHist, h.Write)
}

// offersHistograms reports whether a VM's hypervisor has latency
// histograms, as far as the source knows (unknown counts as yes: the
// set call then says).
func (a *Agent) offersHistograms(vm string) bool {
	if o, ok := a.src.(interface{ OffersHistograms(string) bool }); ok {
		return o.OffersHistograms(vm)
	}
	return true
}
