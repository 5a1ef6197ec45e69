package agent

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// watchList is what the agent needs every interval, by VM and why: a
// rule pending, firing or resolving on one of its disks, a knob qtune
// holds on it, a block job running on it. facts reads it through
// Options.Watched (it knows nothing of rules, knobs or jobs); the cycle
// writes it once its rules have moved, so a rule that turns pending has
// its VM sampled every interval from the next cycle on.
type watchList struct {
	p atomic.Pointer[map[string]string]
}

// reason is why vm is watched, or "".
func (w *watchList) reason(vm string) string {
	if m := w.p.Load(); m != nil {
		return (*m)[vm]
	}
	return ""
}

// update sets the list from the rules' states, the owned knobs and the
// jobs.
func (w *watchList) update(states []policy.StateInfo, owned []state.Owned, jobs []state.Job) {
	why := map[string][]string{}
	add := func(vm, s string) {
		for _, x := range why[vm] {
			if x == s {
				return
			}
		}
		why[vm] = append(why[vm], s)
	}
	for _, st := range states {
		if st.State != policy.StateInactive {
			add(st.VM, fmt.Sprintf("rule %s %s", st.Rule, st.State))
		}
	}
	for _, o := range owned {
		add(o.VM, fmt.Sprintf("%s held", o.Knob))
	}
	for _, j := range jobs {
		if !j.State.Final() {
			add(j.VM, fmt.Sprintf("%s job", j.Kind))
		}
	}
	m := make(map[string]string, len(why))
	for vm, r := range why {
		sort.Strings(r)
		m[vm] = strings.Join(r, ", ")
	}
	w.p.Store(&m)
}

// updateWatched rebuilds the watch list after a cycle.
func (a *Agent) updateWatched() {
	owned, _ := a.store.AllOwned() // a bad record is reported by reconcileOwned
	var js []state.Job
	if a.jobs != nil {
		js, _ = a.jobs.Jobs()
	}
	a.watch.update(a.eval.States(), owned, js)
}

// cadencer is a source that samples VMs at their own cadence.
type cadencer interface {
	Cadences() map[string]facts.CadenceInfo
}

// retained keeps each VM's last points between its samples, for status
// and metrics: a quiet VM sampled every idle interval is still there in
// the cycles between, with its sample's age. The rules see only the
// points sampled in their cycle.
type retained struct {
	byVM map[string][]sample.Point
}

// merge records this cycle's fresh points and returns them with the
// last points of the VMs not sampled this cycle, ordered by VM and disk.
// A VM gone, or with an error this cycle, is dropped.
func (r *retained) merge(fresh []sample.Point, errs map[string]error, gone []string) []sample.Point {
	if r.byVM == nil {
		r.byVM = map[string][]sample.Point{}
	}
	for _, vm := range gone {
		delete(r.byVM, vm)
	}
	for vm := range errs {
		delete(r.byVM, vm)
	}
	if _, ok := errs[sourceError]; ok {
		r.byVM = map[string][]sample.Point{}
		return fresh
	}
	sampled := map[string][]sample.Point{}
	for _, p := range fresh {
		sampled[p.Disk.VM] = append(sampled[p.Disk.VM], p)
	}
	out := fresh
	extra := false
	for vm, ps := range r.byVM {
		if _, ok := sampled[vm]; !ok {
			out = append(out, ps...)
			extra = true
		}
	}
	for vm, ps := range sampled {
		r.byVM[vm] = ps
	}
	if extra {
		out = append([]sample.Point(nil), out...)
		sort.SliceStable(out, func(i, j int) bool {
			return cmpVMDisk(out[i].Disk.VM, out[i].Disk.Name, out[j].Disk.VM, out[j].Disk.Name) < 0
		})
	}
	return out
}

// raterKeep is how long the rater keeps a disk it has not seen: past a
// quiet VM's idle interval, so that its next sample has a rate.
func raterKeep(interval, idle time.Duration) time.Duration {
	return max(sample.SweepAfter*interval, 3*idle)
}
