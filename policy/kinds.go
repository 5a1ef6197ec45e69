package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/qtune/qtune/internal/sample"
)

// ActionKind is all the policy layer knows about one kind of rule action
// — a knob qtune holds (throttle, cache, l2_cache) or a block job it
// starts (stream, mirror, convert): the block's name and attributes, how
// the block is decoded and validated, and how a plan tells it. Each kind
// registers itself from its own file (kind_*.go); parsing, plan and
// policy check go through the registry, so a new kind is one new file
// here and one in tuning, and no switch anywhere else.
type ActionKind struct {
	Knob Knob
	// Job marks a one-shot block job: started once, never held or
	// reverted.
	Job bool
	// Driven marks a knob the agent sets from what the rules in force
	// need (latency histograms for p95/p99 metrics), never written in a
	// rule: it has no block and no Parse.
	Driven bool
	// Attrs are the block's attribute names; any other is an error.
	Attrs []string
	// Parse decodes the block into the kind's spec, reporting every
	// problem through b. A spec is returned even with problems.
	Parse func(b *Block) any
	// Describe is the one-line plan text of a spec.
	Describe func(spec any) string
	// InForce, when set, says whether a sample already shows the spec
	// in effect (plan prints "= keeps" instead of "+ would set").
	InForce func(spec any, p *sample.Point) bool
	// Bounds are the largest values the hypervisor accepts for the
	// block's attributes: policy check refuses more at its place in
	// the file, instead of QEMU refusing it when a rule fires.
	Bounds []Bound

	// get and set map the spec to Action's typed field of a built-in
	// kind; kinds without one keep their spec in Action.Other.
	get func(Action) any
	set func(*Action, any)
}

// Bound is the largest value a hypervisor accepts for one attribute of an
// action block, in the attribute's unit (a count, bytes, bytes per
// second; seconds for a duration).
type Bound struct {
	Attr string
	Max  uint64
	// Why says whose limit it is, ending the error: "the largest
	// limit QEMU accepts (THROTTLE_VALUE_MAX)".
	Why string
}

var kinds struct {
	sync.RWMutex
	by map[Knob]ActionKind
}

// RegisterAction adds an action kind. It panics on a kind without a
// name, parser or describer, or one registered twice: that is a
// programming error found at start, not a policy error.
func RegisterAction(k ActionKind) {
	if k.Knob == "" || (k.Parse == nil && !k.Driven) || k.Describe == nil {
		panic(fmt.Sprintf("policy: action kind %q needs a name, Parse and Describe", k.Knob))
	}
	for _, b := range k.Bounds {
		if !slices.Contains(k.Attrs, b.Attr) {
			panic(fmt.Sprintf("policy: action kind %q bounds %q, which is not one of its attributes", k.Knob, b.Attr))
		}
	}
	if k.get == nil {
		k.get = func(a Action) any { return a.Other }
		k.set = func(a *Action, v any) { a.Other = v }
	}
	kinds.Lock()
	defer kinds.Unlock()
	if kinds.by == nil {
		kinds.by = map[Knob]ActionKind{}
	}
	if _, dup := kinds.by[k.Knob]; dup {
		panic(fmt.Sprintf("policy: action kind %q registered twice", k.Knob))
	}
	kinds.by[k.Knob] = k
}

// UnregisterAction removes a kind; tests that register one use it to
// clean up.
func UnregisterAction(k Knob) {
	kinds.Lock()
	defer kinds.Unlock()
	delete(kinds.by, k)
}

// ActionKindOf returns the registered kind of a knob.
func ActionKindOf(k Knob) (ActionKind, bool) {
	kinds.RLock()
	defer kinds.RUnlock()
	a, ok := kinds.by[k]
	return a, ok
}

// ActionKinds lists the registered kinds by name.
func ActionKinds() []ActionKind {
	kinds.RLock()
	defer kinds.RUnlock()
	out := make([]ActionKind, 0, len(kinds.by))
	for _, k := range kinds.by {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Knob < out[j].Knob })
	return out
}

// builtin registers a built-in kind whose spec has a typed field of
// Action.
func builtin[T any](k ActionKind, field func(*Action) **T) {
	k.get = func(a Action) any {
		if p := *field(&a); p != nil {
			return p
		}
		return nil
	}
	k.set = func(a *Action, v any) {
		if p, ok := v.(*T); ok {
			*field(a) = p
		}
	}
	RegisterAction(k)
}

// HeldKnobs lists the registered knobs qtune holds (every kind but block
// jobs), by name.
func HeldKnobs() []Knob {
	var out []Knob
	for _, k := range ActionKinds() {
		if !k.Job {
			out = append(out, k.Knob)
		}
	}
	return out
}

// IsJob reports whether k is a registered block-job kind.
func IsJob(k Knob) bool {
	a, ok := ActionKindOf(k)
	return ok && a.Job
}

// Spec is the action's spec for knob k: the typed field of a built-in
// kind (as its pointer type), or Other.
func (a Action) Spec(k Knob) any {
	if kind, ok := ActionKindOf(k); ok {
		return kind.get(a)
	}
	return nil
}

// Describe is the plan text of a decision's action.
func (d Decision) Describe() string {
	if d.Revert {
		return "the value it had before qtune"
	}
	kind, ok := ActionKindOf(d.Knob)
	if !ok {
		return ""
	}
	return kind.Describe(kind.get(d.Action))
}

// InForce reports whether p already shows d's action in effect; false
// when the kind cannot tell.
func (d Decision) InForce(p *sample.Point) bool {
	kind, ok := ActionKindOf(d.Knob)
	if !ok || kind.InForce == nil {
		return false
	}
	return kind.InForce(kind.get(d.Action), p)
}

func actionNames() []string {
	var names []string
	for _, k := range ActionKinds() {
		if !k.Driven {
			names = append(names, string(k.Knob))
		}
	}
	return names
}

// ruleSchema is built at parse time: kinds register in init functions,
// after package variables are set.
func ruleSchema() *hcl.BodySchema {
	s := &hcl.BodySchema{Attributes: ruleAttrs, Blocks: []hcl.BlockHeaderSchema{{Type: "match"}}}
	for _, n := range actionNames() {
		s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: n})
	}
	return s
}

// Block is one action block of a rule as its kind's Parse sees it: typed
// reads of its constant attributes, and problems reported at their place
// in the file.
type Block struct {
	c    *collector
	rule *Rule
	hcl  *hcl.Block
	a    attrs
}

func newBlock(c *collector, r *Rule, b *hcl.Block, kind ActionKind) *Block {
	return &Block{c: c, rule: r, hcl: b, a: blockAttrs(c, r, b, schemaOf(kind.Attrs...), kind.Bounds...)}
}

// AllowUnsafe is the rule's allow_unsafe.
func (b *Block) AllowUnsafe() bool { return b.rule.AllowUnsafe }

// Has reports whether the block sets name.
func (b *Block) Has(name string) bool { return b.a.has(name) }

// String reads a string attribute.
func (b *Block) String(name, def string) string { return b.a.str(name, def) }

// Bool reads a boolean attribute.
func (b *Block) Bool(name string, def bool) bool { return b.a.boolean(name, def) }

// Number reads a whole number; with bytes, a size such as "50MiB" too.
func (b *Block) Number(name string, bytes bool) (uint64, bool) { return b.a.number(name, bytes) }

// Duration reads a duration such as "90s".
func (b *Block) Duration(name string, def time.Duration) time.Duration {
	return b.a.duration(name, def)
}

// Errorf reports an error at attribute attr (the block itself when attr
// is "" or not set).
func (b *Block) Errorf(attr, summary, detail string) {
	b.c.at(b.rangeOf(attr), b.rule.Name, summary, detail)
}

func (b *Block) rangeOf(attr string) hcl.Range {
	if x, ok := b.a.m[attr]; ok {
		return x.Expr.Range()
	}
	return b.hcl.DefRange
}

// parseAction decodes a rule's one action block through its kind.
func parseAction(c *collector, r *Rule, b *hcl.Block) {
	kind, ok := ActionKindOf(Knob(b.Type))
	if !ok || kind.Driven {
		c.at(b.DefRange, r.Name, "unknown action "+b.Type, "give one of "+strings.Join(actionNames(), ", "))
		return
	}
	r.Knob = kind.Knob
	kind.set(&r.Action, kind.Parse(newBlock(c, r, b, kind)))
}
