package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

// goneCycles is how many cycles in a row a plain QEMU VM must be absent
// (no socket, the source answering) before the live changes qtune made
// to it count as gone with its QEMU process.
const goneCycles = 3

// forgetAbsentAfter is how long the records of a libvirt domain that is
// not running are kept: a domain migrated away and back brings its live
// throttles with it, and a stopped one comes back with its definition's.
// Either way the knob is read and reconciled when it returns; only a
// domain away this long is taken as gone for good, its budget freed.
const forgetAbsentAfter = 24 * time.Hour

// migratingSource is a source whose VMs may leave with their live
// settings and return (libvirt).
type migratingSource interface{ VMsMigrate() bool }

type absence struct {
	cycles int
	since  time.Time
}

// reconciler carries what reconciliation remembers between cycles.
type reconciler struct {
	checked map[string]bool      // record checked against its backend since its VM was last reachable
	absent  map[string]absence   // VM: away since, for how many cycles
	orphan  map[string]time.Time // record: orphaned since
	why     map[string]string    // record: why orphaned
	retry   map[string]retryGate // record: when a failed release may be tried again
	settled map[string]int       // knob kind: records settled this cycle
	actions []api.ActionStatus   // what reconciliation did this cycle, for status
	sampled map[string]bool      // VMs sampled this cycle; nil before the first
	idNote  map[string]string    // VM: why its identity is unknown
	// foreignHist: disks (VM/disk) found with a histogram someone else
	// set, in a way the sample does not show (flush only), and the VM
	// as it was then: never owned while it runs.
	foreignHist map[string]sample.VMIdentity
	// migrating is each VM in a live migration this cycle, and what
	// status says of it.
	migrating map[string]string
	// jobsWritten is, per domain, the copies last written into its records.
	jobsWritten map[string]string
	// mismatch is, per owned knob, how its record in the domain and the
	// store's disagree; recordsChecked when each domain was last compared.
	mismatch       map[string]string
	recordsChecked map[string]time.Time
	ownedErr       string
}

type retryGate struct {
	n    int
	next time.Time
}

func newReconciler() *reconciler {
	return &reconciler{checked: map[string]bool{}, absent: map[string]absence{}, orphan: map[string]time.Time{},
		why: map[string]string{}, retry: map[string]retryGate{}, idNote: map[string]string{}, foreignHist: map[string]sample.VMIdentity{}}
}

func ownedKey(o state.Owned) string { return o.VM + "/" + o.Disk + "/" + string(o.Knob) }

func wireKey(o api.Owned) string { return o.VM + "/" + o.Disk + "/" + string(o.Knob) }

// reconcileOwned runs before the evaluation of each cycle: it forgets the
// knobs of VMs gone with their QEMU process, checks each record against
// its backend once its VM is reachable (intent resolved, drift handed
// over), releases knobs whose rule a clean policy no longer has, and
// gives the evaluator back every knob a rule in force holds, so that a
// restart does not leave it held by nothing.
func (a *Agent) reconcileOwned(ctx context.Context, now time.Time, disks []sample.Disk, errs map[string]error, gone []string) {
	r := a.recon
	r.settled, r.actions = map[string]int{}, nil
	r.sampled = map[string]bool{}
	present := map[string]bool{}
	for _, d := range disks {
		r.sampled[d.VM], present[d.VM] = true, true
	}
	for vm := range errs {
		present[vm] = true
	}
	a.takeCarried(now)
	owned, err := a.store.AllOwned()
	a.noteOwnedError(err)
	a.migrationProbe(ctx, owned)
	connected, _ := a.src.Connected()
	// A sample that failed as a whole (the bulk call timed out) says
	// nothing about which VMs are there: absence is counted only when
	// the source answered.
	answered := connected && errs[sourceError] == nil
	goneNow := map[string]bool{}
	for _, vm := range gone {
		goneNow[vm] = true
	}
	ms, _ := a.src.(migratingSource)
	migrates := ms != nil && ms.VMsMigrate()
	counted := map[string]bool{}
	for _, o := range owned {
		if !counted[o.VM] {
			counted[o.VM] = true
			r.noteAbsence(o.VM, present[o.VM], answered, now)
		}
		away := r.absent[o.VM]
		gone := goneNow[o.VM] || away.cycles >= goneCycles
		if migrates {
			gone = away.cycles > 0 && now.Sub(away.since) >= forgetAbsentAfter
		}
		a.reconcileOne(ctx, now, o, gone)
	}
	a.syncHistograms(ctx, now, disks)
	a.syncJobRecords(ctx)
}

func (r *reconciler) noteAbsence(vm string, present, answered bool, now time.Time) {
	switch {
	case present:
		delete(r.absent, vm)
	case answered:
		a := r.absent[vm]
		if a.cycles == 0 {
			a.since = now
		}
		a.cycles++
		r.absent[vm] = a
	}
}

func (a *Agent) reconcileOne(ctx context.Context, now time.Time, o state.Owned, vmGone bool) {
	r, k := a.recon, ownedKey(o)
	switch {
	case vmGone && !o.Persist:
		if err := a.exec.Forget(o, "its VM is gone, and the live change with it"); err == nil {
			a.settle(k)
		}
		return
	case !r.sampled[o.VM]:
		delete(r.checked, k)
		r.orphaned(k, now, "its VM cannot be reached")
		return
	case a.otherVM(now, &o):
		return
	}
	if !r.checked[k] && o.Phase != state.PhaseReleased {
		out, err := a.exec.Reconcile(ctx, o)
		if err != nil && !errors.Is(err, tuning.ErrDrift) {
			r.orphaned(k, now, "its knob cannot be read: "+err.Error())
			return
		}
		r.checked[k] = true
		if out.Result != state.ResultNoOp {
			a.noteReconciled(now, o, out, err)
		}
		if out.Result == state.ResultResolved && a.isGone(o) {
			a.settle(k)
			return
		}
	}
	if o.Knob == policy.KnobHistogram {
		return // no rule's action: held or released by syncHistograms
	}
	if a.eval.Set().Rule(o.Rule) == nil {
		a.releaseOrphan(ctx, now, o)
		return
	}
	a.unorphan(k)
	a.eval.Adopt(now, o.Rule, o.VM, o.Disk)
}

// releaseOrphan restores a knob whose rule is not in the set in force,
// when that set loaded cleanly; a failure is tried again with backoff.
func (a *Agent) releaseOrphan(ctx context.Context, now time.Time, o state.Owned) {
	r, k := a.recon, ownedKey(o)
	if !a.rulesCanBeRemoved() {
		r.orphaned(k, now, fmt.Sprintf("rule %s is not in force and no policy that loaded cleanly says it was removed", o.Rule))
		return
	}
	if g := r.retry[k]; now.Before(g.next) {
		r.orphaned(k, now, fmt.Sprintf("rule %s is gone; restoring failed, next try at %s", o.Rule, g.next.Format(time.RFC3339)))
		return
	}
	d := policy.Decision{At: now, Rule: o.Rule, VM: o.VM, Disk: o.Disk, Knob: o.Knob, Revert: true,
		Persist: o.Persist, Mode: policy.ModeEnforce, Reason: "rule no longer in the policy"}
	act := a.execute(ctx, d)
	r.actions = append(r.actions, act)
	if a.isGone(o) {
		a.settle(k)
		return
	}
	g := r.retry[k]
	g.n++
	g.next = now.Add(backoff(g.n, rand.Float64()))
	r.retry[k] = g
	r.orphaned(k, now, fmt.Sprintf("rule %s is gone; not restored yet (%s %s)", o.Rule, act.Result, act.Error))
}

// isGone reports whether o's record left the store.
func (a *Agent) isGone(o state.Owned) bool {
	cur, err := a.store.Owned(o.Target, o.Knob)
	return err == nil && cur == nil
}

func (r *reconciler) orphaned(k string, now time.Time, why string) {
	if _, ok := r.orphan[k]; !ok {
		r.orphan[k] = now
	}
	r.why[k] = why
}

// settle: the record is gone (restored, handed over or forgotten).
func (a *Agent) settle(k string) {
	a.recon.settled[k[strings.LastIndex(k, "/")+1:]]++
	delete(a.recon.checked, k)
	a.unorphan(k)
}

func (a *Agent) unorphan(k string) {
	r := a.recon
	if _, ok := r.orphan[k]; ok {
		delete(r.orphan, k)
		delete(r.why, k)
		delete(r.retry, k)
		if a.failLog.Recovered("orphan/" + k) {
			a.log.Info("owned knob no longer orphaned", "knob", k)
		}
	}
}

func (a *Agent) noteOwnedError(err error) {
	a.recon.ownedErr = ""
	if err == nil {
		a.failLog.Recovered("owned")
		return
	}
	a.recon.ownedErr = err.Error()
	if log, n := a.failLog.Failed("owned", err.Error()); log {
		a.log.Error("owned knobs not all readable from the state store", "error", err.Error(), "repeats_since_last_line", n)
	}
}

// ownedStates classifies every owned knob after the cycle's actions, and
// warns (once, then as a reminder) about knobs orphaned too long.
func (a *Agent) ownedStates(now time.Time, owned []state.Owned) []api.OwnedStatus {
	r := a.recon
	a.mu.Lock()
	hist := a.status.Histograms
	a.mu.Unlock()
	out := make([]api.OwnedStatus, 0, len(owned))
	for _, o := range owned {
		k := ownedKey(o)
		s := api.OwnedStatus{Owned: wireOwned(o), NotReadBack: !tuning.ReadsBack(o.Knob), IdentityNote: r.idNote[o.VM],
			RecordMismatch: r.mismatch[k]}
		switch since, orphan := r.orphan[k]; {
		case o.Phase == state.PhaseReleased && o.Knob == policy.KnobHistogram:
			s.State, s.Reason = api.OwnedDrifted, "changed or removed by someone else; left as it is, the record dropped when no rule needs latency histograms"
		case o.Phase == state.PhaseReleased:
			s.State, s.Reason = api.OwnedDrifted, "changed by someone else; left as they set it until rule "+o.Rule+" stops firing"
		case orphan:
			s.State, s.Reason, s.Since = api.OwnedOrphaned, r.why[k], since
			a.warnOrphan(now, s)
		case o.Knob == policy.KnobHistogram:
			s.State, s.Reason = histogramState(hist)
		case a.eval.StateOf(o.Rule, o.VM, o.Disk) == policy.StateFiring:
			s.State = api.OwnedHeld
		default:
			s.State, s.Reason = api.OwnedReleasing, "rule "+o.Rule+" no longer fires: restored after its clear_after"
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return wireKey(out[i].Owned) < wireKey(out[j].Owned) })
	return out
}

func (a *Agent) warnOrphan(now time.Time, s api.OwnedStatus) {
	k := wireKey(s.Owned)
	if now.Sub(s.Since) < a.cfg.OrphanWarnAfter {
		return
	}
	if log, n := a.failLog.Failed("orphan/"+k, s.Reason); log {
		a.log.Warn("owned knob orphaned", "vm", s.VM, "disk", s.Disk, "knob", string(s.Knob), "rule", s.Rule,
			"since", s.Since.Format(time.RFC3339), "reason", s.Reason, "repeats_since_last_line", n)
	}
}

// noteReconciled puts what a record's check did (resolved, drift) among
// the cycle's actions, as an executed decision would be.
func (a *Agent) noteReconciled(now time.Time, o state.Owned, out tuning.Outcome, err error) {
	a.m.actions.WithLabelValues(o.Rule, string(o.Knob), string(out.Result)).Inc()
	st := api.ActionStatus{At: now, Rule: o.Rule, VM: o.VM, Disk: o.Disk, Knob: string(o.Knob), Result: string(out.Result),
		Before: out.Before.String(), After: out.After.String(), Reason: out.Reason}
	if err != nil {
		st.Error = err.Error()
	}
	a.recon.actions = append(a.recon.actions, st)
}
