package policy

import (
	"fmt"
	"math"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/qtune/qtune/internal/sample"
)

// State is where a rule stands for one disk.
//
//	             cond true              held for `for`
//	inactive ─────────────> pending ─────────────────> firing ──┐
//	   ^  ^                   │ cond false or unknown    ^  │     │ cond true
//	   │  └───────────────────┘                          │  │ <───┘
//	   │                                       cond true │  │ cond false
//	   │     false held for `clear_after`                │  v
//	   └────────────────────────────────────────────── resolving
//	         (emits the revert decision)
//
// With release_when, "cond false" on the way out (firing → resolving, and
// resolving held for clear_after) is release_when true, and "cond true"
// (resolving → firing) is release_when false; when is only the way in.
//
// An unknown condition (stale or missing sample, a metric without a value)
// never moves a rule toward acting or toward reverting: in pending it
// falls back to inactive (acting needs `for` of unbroken truth), in firing
// nothing changes, and in resolving the clear_after clock starts over
// (releasing needs clear_after of unbroken falsehood). A reading a held
// throttle keeps down is unknown in the same way (censor.go).
type State string

const (
	StateInactive  State = "inactive"
	StatePending   State = "pending"
	StateFiring    State = "firing"
	StateResolving State = "resolving"
)

// DefaultMaxAge is how old a sample may be and still count.
const DefaultMaxAge = 30 * time.Second

type stateKey struct{ rule, vm, disk string }

type ruleState struct {
	rule   *Rule
	state  State
	since  time.Time // when the current state began
	inputs map[string]float64
}

// StateInfo is one rule's state on one disk, for status pages.
type StateInfo struct {
	Rule   string             `json:"rule"`
	VM     string             `json:"vm"`
	Disk   string             `json:"disk"`
	State  State              `json:"state"`
	Since  time.Time          `json:"since"`
	Inputs map[string]float64 `json:"inputs,omitempty"`
}

// Evaluator runs a policy set over samples. It is not safe for concurrent
// use; the agent calls it from one loop. It never reads a clock: every
// call is given the time.
type Evaluator struct {
	// MaxAge is how old a sample may be (relative to now) and still count.
	MaxAge time.Duration

	set     *Set
	states  map[stateKey]*ruleState
	history *history
	normals normals
	// last is the previous evaluation's time: a sample's window counts
	// toward `for` only from there, so a rate averaged over a gap in
	// the samples is not taken for the condition holding all along.
	last time.Time
}

// NewEvaluator starts evaluating set with no state.
func NewEvaluator(set *Set) *Evaluator {
	e := &Evaluator{MaxAge: DefaultMaxAge, states: map[stateKey]*ruleState{}, history: newHistory(), normals: normals{}}
	e.Update(time.Time{}, set)
	return e
}

// Set returns the policy in force.
func (e *Evaluator) Set() *Set { return e.set }

// Evaluate advances every rule on every disk to now and returns the
// decisions: the desired state of each knob a firing rule owns (every
// evaluation, so the executor can keep it in place), and reverts.
func (e *Evaluator) Evaluate(now time.Time, points []sample.Point) []Decision {
	aggs := vmAggregates(points)
	// Each sample is compared with the normals learnt before it.
	nbs := neighbourhoods(points, e.normals)
	e.normals.add(points)
	e.history.add(points, e.set, aggs, nbs)
	e.history.trim(now)
	touched := map[stateKey]bool{}
	var out []Decision
	for i := range points {
		p := &points[i]
		in := input{p: p, vm: aggs[p.Disk.VM], held: e.heldThrottle(p), nb: nbs[p.Disk.VM+"/"+p.Disk.Name]}
		stale := now.Sub(p.Disk.Time) > e.MaxAge || p.Disk.Time.After(now.Add(e.MaxAge))
		for _, r := range e.set.Rules {
			touched[stateKey{r.Name, p.Disk.VM, p.Disk.Name}] = true
			if d, ok := e.step(now, r, in, stale); ok {
				out = append(out, d)
			}
		}
	}
	// A disk without a sample this time is unknown, not false: a pending
	// rule starts over, a firing one holds.
	for k, st := range e.states {
		if !touched[k] {
			st.advance(now, observation{})
			if st.state == StateInactive {
				delete(e.states, k)
			}
		}
	}
	e.last = now
	return resolveConflicts(out)
}

// heldThrottle is the throttle in force on p's disk when a throttle rule
// of this policy holds it (firing or resolving, enforced): then the rates
// that throttle caps are censored (see censor.go).
func (e *Evaluator) heldThrottle(p *sample.Point) *sample.Throttle {
	if !p.Disk.Throttle.Active() {
		return nil
	}
	for k, st := range e.states {
		if k.vm == p.Disk.VM && k.disk == p.Disk.Name && st.rule.Knob == KnobThrottle && st.rule.Mode == ModeEnforce &&
			(st.state == StateFiring || st.state == StateResolving) {
			t := p.Disk.Throttle
			return &t
		}
	}
	return nil
}

// step moves one rule on one disk and returns its decision, if any.
func (e *Evaluator) step(now time.Time, r *Rule, in input, stale bool) (Decision, bool) {
	k := stateKey{r.Name, in.p.Disk.VM, in.p.Disk.Name}
	st := e.states[k]
	if st == nil {
		st = &ruleState{rule: r, state: StateInactive, since: now}
	}
	var o observation
	inputs := map[string]float64(nil)
	if r.Match.matches(in.p) {
		if !stale {
			o, inputs = e.condition(now, r, in)
		}
	} else {
		// A disk the rule no longer matches: its condition is false.
		o = observation{enterKnown: true, leave: true, leaveKnown: true}
	}
	if inputs != nil {
		st.inputs = inputs
	}
	o.covers(in.p, e.last)
	revert := st.advance(now, o)
	if st.state == StateInactive {
		delete(e.states, k)
	} else {
		e.states[k] = st
	}
	switch {
	case revert:
		return st.decision(now, in.p, true), true
	case (st.state == StateFiring || st.state == StateResolving) && inWindow(r.Windows, now):
		return st.decision(now, in.p, false), true
	}
	return Decision{}, false
}

// observation is one evaluation of a rule's conditions: whether to enter
// (when) and whether to leave (release_when, or when turned false), each
// possibly unknown.
type observation struct {
	enter, enterKnown bool
	leave, leaveKnown bool
	// from and to are the time the sample covers: its rates are over
	// the interval before it was taken. Zero when unknown.
	from, to time.Time
}

// covers records the window of p's rates, from notBefore at the
// earliest.
func (o *observation) covers(p *sample.Point, notBefore time.Time) {
	o.from, o.to = p.Disk.Time.Add(-p.Rates.Interval), p.Disk.Time
	switch {
	case notBefore.After(o.to):
		o.from = o.to
	case o.from.Before(notBefore):
		o.from = notBefore
	}
}

// heldFor reports whether the condition, true since since, has now held
// for d: samples are windows, so the time counts from the start of the
// first window that found it true to the end of this one. A quarter of
// this window is allowed for the jitter of sample times on a busy host,
// so that a `for` of two intervals takes two samples and not, now and
// then, a third.
func (o observation) heldFor(since time.Time, d time.Duration) bool {
	return o.to.Sub(since)+o.to.Sub(o.from)/4 >= d
}

// advance applies one observation; it reports whether the rule just
// finished resolving and must revert.
func (st *ruleState) advance(now time.Time, o observation) bool {
	r := st.rule
	set := func(s State) { st.state, st.since = s, now }
	switch st.state {
	case StateInactive:
		if o.enterKnown && o.enter {
			set(StatePending)
			st.since = o.from
			if r.For == 0 || o.heldFor(st.since, r.For) {
				set(StateFiring)
			}
		}
	case StatePending:
		switch {
		case !o.enterKnown || !o.enter:
			set(StateInactive)
		case o.heldFor(st.since, r.For):
			set(StateFiring)
		}
	case StateFiring:
		if o.leaveKnown && o.leave {
			set(StateResolving)
			if r.ClearAfter == 0 {
				set(StateInactive)
				return true
			}
		}
	case StateResolving:
		switch {
		case o.leaveKnown && !o.leave:
			set(StateFiring)
		case !o.leaveKnown:
			set(StateResolving) // clear_after needs unbroken release
		case now.Sub(st.since) >= r.ClearAfter:
			set(StateInactive)
			return true
		}
	}
	return false
}

func (st *ruleState) decision(now time.Time, p *sample.Point, revert bool) Decision {
	r := st.rule
	d := Decision{
		At: now, Rule: r.Name, Priority: r.Priority, Mode: r.Mode, VM: p.Disk.VM, Disk: p.Disk.Name,
		Knob: r.Knob, Revert: revert, Inputs: st.inputs, Cooldown: r.Cooldown, Persist: r.Persist,
	}
	if revert {
		d.Reason = fmt.Sprintf("%s no longer holds (false for %s): restore the original", r.WhenText, r.ClearAfter)
		if r.ReleaseWhen != nil {
			d.Reason = fmt.Sprintf("release_when %s held for %s: restore the original", r.ReleaseText, r.ClearAfter)
		}
		return d
	}
	d.Action = r.Action
	d.Reason = fmt.Sprintf("%s %s since %s: %s%s", r.Name, st.state, st.since.Format(time.RFC3339), r.WhenText, inputsString(st.inputs))
	return d
}

func inputsString(in map[string]float64) string {
	if len(in) == 0 {
		return ""
	}
	return " (" + FormatInputs(in, ", ") + ")"
}

// FormatInputs renders a decision's inputs as sorted name=value pairs.
func FormatInputs(in map[string]float64, sep string) string {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.4g", k, in[k])
	}
	return strings.Join(parts, sep)
}

// condition evaluates r's conditions for in. Without release_when,
// leaving is when turning false.
func (e *Evaluator) condition(now time.Time, r *Rule, in input) (observation, map[string]float64) {
	inputs := map[string]float64{}
	for _, name := range r.refs {
		if m, _ := LookupMetric(name); m.Type == cty.Number {
			if v := m.get(in); v.IsKnown() {
				f, _ := v.AsBigFloat().Float64()
				inputs[name] = f
			}
		}
	}
	vals := make([]cty.Value, len(r.sites))
	for i, s := range r.sites {
		v := e.history.window(in.p.Disk.VM, in.p.Disk.Name, s, now)
		vals[i] = num(v)
		if censoredNow(s.metric, in.held, in.p) {
			vals[i] = censored(v)
		}
		if !math.IsNaN(v) {
			inputs[fmt.Sprintf("%s(%s,%s)", s.fn, s.metric, s.window)] = v
		}
	}
	ctx := evalContext(r, in, vals)
	var o observation
	o.enter, o.enterKnown = truth(r.When, ctx)
	o.leave, o.leaveKnown = !o.enter, o.enterKnown
	if r.ReleaseWhen != nil {
		o.leave, o.leaveKnown = truth(r.ReleaseWhen, ctx)
	}
	return o, inputs
}

// truth evaluates a condition; known is false when it depends on a value
// qtune does not have.
func truth(expr hcl.Expression, ctx *hcl.EvalContext) (v, known bool) {
	val, diags := expr.Value(ctx)
	if diags.HasErrors() || !val.IsKnown() || val.IsNull() || val.Type() != cty.Bool {
		return false, false
	}
	return val.True(), true
}

func (m Match) matches(p *sample.Point) bool {
	glob := func(pat, s string) bool {
		if pat == "" {
			return true
		}
		ok, _ := path.Match(pat, s)
		return ok
	}
	if !glob(m.Domain, p.Disk.VM) || !glob(m.Disk, p.Disk.Name) || !glob(m.Path, p.Disk.Path) {
		return false
	}
	if m.Format != "" && m.Format != p.Disk.Format {
		return false
	}
	for k, pat := range m.Meta {
		v, ok := p.Meta[k]
		if !ok || !glob(pat, v) {
			return false
		}
	}
	return true
}

func inWindow(ws []Window, now time.Time) bool {
	if len(ws) == 0 {
		return true
	}
	for _, w := range ws {
		if w.Contains(now) {
			return true
		}
	}
	return false
}

func vmAggregates(points []sample.Point) map[string]vmAgg {
	out := map[string]vmAgg{}
	for _, p := range points {
		a := out[p.Disk.VM]
		a.diskCount++
		a.totalIOPS += p.Rates.ReadIOPS + p.Rates.WriteIOPS
		a.totalBP += p.Rates.ReadBPS + p.Rates.WriteBPS
		out[p.Disk.VM] = a
	}
	return out
}

// ForgetVM drops every state and all history of a VM that is gone (its
// domain was destroyed or undefined). A VM that merely missed a sample is
// not gone: its rules hold where they are.
func (e *Evaluator) ForgetVM(vm string) {
	for k := range e.states {
		if k.vm == vm {
			delete(e.states, k)
		}
	}
	e.history.forget(vm)
	e.normals.forget(vm)
}

// States lists every rule that is not inactive, for status pages.
func (e *Evaluator) States() []StateInfo {
	out := make([]StateInfo, 0, len(e.states))
	for k, st := range e.states {
		out = append(out, StateInfo{Rule: k.rule, VM: k.vm, Disk: k.disk, State: st.state, Since: st.since, Inputs: st.inputs})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Rule+"\x00"+a.VM+"\x00"+a.Disk < b.Rule+"\x00"+b.VM+"\x00"+b.Disk
	})
	return out
}

// Adopt gives the evaluator back a knob the state store says rule holds
// on vm/disk, after a restart or once the VM is reachable again: the
// rule starts firing there, so that it keeps the knob while it holds and
// releases it through clear_after when it does not, as if the agent had
// never stopped. It reports false, and does nothing, when the rule is
// not in the set or already has a state on that disk.
func (e *Evaluator) Adopt(now time.Time, rule, vm, disk string) bool {
	k := stateKey{rule, vm, disk}
	if e.states[k] != nil {
		return false
	}
	for _, r := range e.set.Rules {
		if r.Name == rule {
			e.states[k] = &ruleState{rule: r, state: StateFiring, since: now}
			return true
		}
	}
	return false
}

// StateOf returns rule's state on vm/disk (inactive when it has none).
func (e *Evaluator) StateOf(rule, vm, disk string) State {
	if st := e.states[stateKey{rule, vm, disk}]; st != nil {
		return st.state
	}
	return StateInactive
}
