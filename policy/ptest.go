package policy

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/qtune/qtune/internal/sample"
)

// A policy test file (*.test.hcl) replays metric series through a policy
// and checks the decisions, like promtool's rule tests:
//
//	policies = ["../policy.d/noisy-neighbour.hcl"]   # relative to this file
//
//	test "a loud writer is throttled, then released" {
//	  interval = "5s"
//	  start    = "2024-01-01T02:00:00Z"               # optional (for windows)
//	  disk "tenant-a" "vda" {
//	    format     = "qcow2"                          # facts: format, path, cache_mode
//	    write_iops = "100x6 3000x12 100x12"
//	  }
//	  host {
//	    io_pressure_some_avg10 = "30x30"
//	  }
//	  expect {
//	    at       = "1m30s"
//	    rule     = "calm-noisy-writers"
//	    vm       = "tenant-a"
//	    disk     = "vda"
//	    decision = "apply"                            # apply, revert or none
//	    throttle { write_iops = 300 }                 # optional: the desired state
//	  }
//	}
//
// A series is space-separated steps at the interval: "V" one sample,
// "VxN" N samples of V, "_" or "_xN" no sample (a gap), "limit" or
// "limitxN" a rate pinned at the throttle in force (write_iops at the
// write_iops or total_iops limit, and so on; unknown with no limit). A
// disk has no sample at a step where all its series have a gap.
//
// The throttle in force is the disk's throttle_* series when it has any;
// otherwise the test applies the policy's own throttle decisions as the
// agent would: an apply takes effect from the next step, a revert lifts it.

// PolicyTest is one test block.
type PolicyTest struct {
	Name     string
	Range    hcl.Range
	Interval time.Duration
	Start    time.Time
	Disks    []testDisk
	Host     map[string][]float64
	Expect   []Expectation
}

type testDisk struct {
	vm, disk string
	facts    map[string]string
	series   map[string][]float64 // NaN = gap
}

// Expectation is one expected (or forbidden) decision.
type Expectation struct {
	Range    hcl.Range
	At       time.Duration
	Rule     string
	VM, Disk string
	Decision string // apply, revert, none
	Throttle map[string]uint64
}

// TestFile is a parsed test file with the policies it tests.
type TestFile struct {
	Path     string
	Policies []string
	Tests    []PolicyTest
}

var testFileSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "policies", Required: true}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "test", LabelNames: []string{"name"}}},
}

var testSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "interval"}, {Name: "start"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "disk", LabelNames: []string{"vm", "disk"}}, {Type: "host"}, {Type: "expect"},
	},
}

// LoadTestFile parses a policy test file.
func LoadTestFile(path string) (*TestFile, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy test: %w", err)
	}
	c := &collector{}
	tf := &TestFile{Path: path}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.Pos{Line: 1, Column: 1})
	c.diags("", diags)
	if !diags.HasErrors() {
		content, diags := f.Body.Content(testFileSchema)
		c.diags("", diags)
		if at, ok := content.Attributes["policies"]; ok {
			tf.Policies = stringList(c, at, filepath.Dir(path))
		}
		for _, b := range content.Blocks {
			tf.Tests = append(tf.Tests, parseTest(c, b))
		}
	}
	if errs := c.ps.sorted().Errors(); len(errs) > 0 {
		return nil, errs
	}
	return tf, nil
}

func stringList(c *collector, at *hcl.Attribute, dir string) []string {
	v, diags := at.Expr.Value(nil)
	c.diags("", diags)
	if diags.HasErrors() || !(v.Type().IsTupleType() || v.Type().IsListType()) {
		c.at(at.Expr.Range(), "", "policies must be a list of files or directories", "")
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.Type() != cty.String {
			c.at(at.Expr.Range(), "", "policies must be strings", "")
			continue
		}
		p := e.AsString()
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		out = append(out, p)
	}
	return out
}

func parseTest(c *collector, b *hcl.Block) PolicyTest {
	t := PolicyTest{Name: b.Labels[0], Range: b.DefRange, Interval: 10 * time.Second,
		Start: time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC), Host: map[string][]float64{}}
	content, diags := b.Body.Content(testSchema)
	c.diags(t.Name, diags)
	if content == nil {
		return t
	}
	a := attrs{c: c, rule: t.Name, m: content.Attributes}
	t.Interval = a.duration("interval", t.Interval)
	if t.Interval <= 0 {
		c.at(b.DefRange, t.Name, "interval must be positive", "")
		t.Interval = 10 * time.Second
	}
	if s := a.str("start", ""); s != "" {
		st, err := time.Parse(time.RFC3339, s)
		if err != nil {
			c.at(content.Attributes["start"].Expr.Range(), t.Name, "start must be an RFC 3339 time", err.Error())
		} else {
			t.Start = st
		}
	}
	for _, blk := range content.Blocks {
		switch blk.Type {
		case "disk":
			t.Disks = append(t.Disks, parseTestDisk(c, t.Name, blk))
		case "host":
			attrsMap, diags := blk.Body.JustAttributes()
			c.diags(t.Name, diags)
			for name, at := range attrsMap {
				if m, ok := LookupMetric("host." + name); !ok || m.set == nil {
					c.at(at.NameRange, t.Name, "unknown host metric "+name, "")
					continue
				}
				t.Host[name] = seriesAttr(c, t.Name, at)
			}
		case "expect":
			t.Expect = append(t.Expect, parseExpect(c, t.Name, blk))
		}
	}
	return t
}

// factNames are the disk facts a test gives as strings; "device" puts
// disks on one host block device ("8:0"), making them neighbours.
var factNames = map[string]bool{"format": true, "path": true, "cache_mode": true, "device": true, "io_status": true}

func parseTestDisk(c *collector, test string, b *hcl.Block) testDisk {
	d := testDisk{vm: b.Labels[0], disk: b.Labels[1], facts: map[string]string{}, series: map[string][]float64{}}
	attrsMap, diags := b.Body.JustAttributes()
	c.diags(test, diags)
	for name, at := range attrsMap {
		if factNames[name] {
			d.facts[name] = attrs{c: c, rule: test, m: attrsMap}.str(name, "")
			continue
		}
		m, ok := LookupMetric("disk." + name)
		if !ok || m.set == nil {
			c.at(at.NameRange, test, "disk."+name+" cannot be given a series", suggest("disk."+name))
			continue
		}
		d.series[name] = seriesAttr(c, test, at)
	}
	return d
}

func seriesAttr(c *collector, test string, at *hcl.Attribute) []float64 {
	v, diags := at.Expr.Value(nil)
	c.diags(test, diags)
	if diags.HasErrors() || v.Type() != cty.String {
		c.at(at.Expr.Range(), test, at.Name+" must be a series string such as \"100x5 3000x20\"", "")
		return nil
	}
	s, err := ParseSeries(v.AsString())
	if err != nil {
		c.at(at.Expr.Range(), test, at.Name+": "+err.Error(), "")
	}
	return s
}

// Pinned in a series stands for "limit": the rate the throttle in force
// lets through at that step.
var Pinned = math.Inf(1)

// ParseSeries reads "100x5 3000x20 _x3 7" into values per step, NaN for
// gaps.
func ParseSeries(s string) ([]float64, error) {
	var out []float64
	for _, tok := range strings.Fields(s) {
		val, count, hasCount := strings.Cut(tok, "x")
		n := 1
		if hasCount {
			var err error
			n, err = strconv.Atoi(count)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%q: the count after x must be a positive integer", tok)
			}
		}
		v := math.NaN()
		switch val {
		case "_":
		case "limit":
			v = Pinned
		default:
			var err error
			v, err = strconv.ParseFloat(val, 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %q is not a number, _ or limit", tok, val)
			}
		}
		for i := 0; i < n; i++ {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty series")
	}
	return out, nil
}

var expectSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "at", Required: true}, {Name: "rule", Required: true}, {Name: "vm", Required: true},
		{Name: "disk", Required: true}, {Name: "decision", Required: true},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "throttle"}},
}

func parseExpect(c *collector, test string, b *hcl.Block) Expectation {
	e := Expectation{Range: b.DefRange}
	content, diags := b.Body.Content(expectSchema)
	c.diags(test, diags)
	if content == nil {
		return e
	}
	a := attrs{c: c, rule: test, m: content.Attributes}
	e.At = a.duration("at", 0)
	e.Rule, e.VM, e.Disk, e.Decision = a.str("rule", ""), a.str("vm", ""), a.str("disk", ""), a.str("decision", "")
	switch e.Decision {
	case "apply", "revert", "none":
	default:
		if at, ok := content.Attributes["decision"]; ok {
			c.at(at.Expr.Range(), test, "decision must be apply, revert or none", "")
		}
	}
	for _, tb := range content.Blocks {
		ta := blockAttrs(c, &Rule{Name: test}, tb, throttleSchema(), throttleBounds()...)
		e.Throttle = map[string]uint64{}
		for _, f := range throttleFields {
			if n, ok := ta.number(f.name, f.bytes); ok {
				e.Throttle[f.name] = n
			}
		}
	}
	return e
}

// Failure is an expectation that did not hold.
type Failure struct {
	Test string
	At   time.Duration
	Msg  string
}

func (f Failure) String() string { return fmt.Sprintf("test %q at %s: %s", f.Test, f.At, f.Msg) }

// Run replays the test against set and returns what did not hold.
func (t PolicyTest) Run(set *Set) []Failure {
	var fails []Failure
	steps := t.steps()
	for _, e := range t.Expect {
		if e.At%t.Interval != 0 || int(e.At/t.Interval) >= steps {
			fails = append(fails, Failure{t.Name, e.At, fmt.Sprintf("expectation at %s is not on a step (interval %s, %d steps)", e.At, t.Interval, steps)})
		}
		if !ruleExists(set, e.Rule) {
			fails = append(fails, Failure{t.Name, e.At, fmt.Sprintf("rule %q is not in the policy", e.Rule)})
		}
	}
	ev := NewEvaluator(set)
	ev.MaxAge = 3 * t.Interval
	applied := map[[2]string]sample.Throttle{}
	for i := 0; i < steps; i++ {
		at := time.Duration(i) * t.Interval
		now := t.Start.Add(at)
		got := ev.Evaluate(now, t.points(i, now, applied))
		applyThrottles(applied, got)
		for _, e := range t.Expect {
			if e.At == at {
				if msg := e.check(got, ev); msg != "" {
					fails = append(fails, Failure{t.Name, at, msg})
				}
			}
		}
	}
	return fails
}

func ruleExists(set *Set, name string) bool {
	for _, r := range set.Rules {
		if r.Name == name {
			return true
		}
	}
	return false
}

func (t PolicyTest) steps() int {
	n := 0
	for _, d := range t.Disks {
		for _, s := range d.series {
			n = max(n, len(s))
		}
	}
	for _, s := range t.Host {
		n = max(n, len(s))
	}
	return n
}

// points builds the samples of step i.
func (t PolicyTest) points(i int, now time.Time, applied map[[2]string]sample.Throttle) []sample.Point {
	var out []sample.Point
	for _, d := range t.Disks {
		p := sample.Point{Disk: sample.Disk{VM: d.vm, Name: d.disk, Time: now, Format: d.facts["format"], Path: d.facts["path"], HostDevice: d.facts["device"], IOStatus: d.facts["io_status"]},
			Rates: sample.Rates{Interval: t.Interval, ReadLatencyMs: math.NaN(), WriteLatencyMs: math.NaN(), FlushLatencyMs: math.NaN(),
				ReadP95Ms: math.NaN(), ReadP99Ms: math.NaN(), WriteP95Ms: math.NaN(), WriteP99Ms: math.NaN(),
				ReadMaxMs: math.NaN(), WriteMaxMs: math.NaN()},
			Host: sample.Host{IOPressureSomeAvg10: math.NaN(), IOPressureSomeAvg60: math.NaN(), IOPressureFullAvg10: math.NaN(), IOPressureFullAvg60: math.NaN()}}
		dk := &p.Disk
		dk.HostDevUtil, dk.HostDevReadBPS, dk.HostDevWriteBPS = math.NaN(), math.NaN(), math.NaN()
		dk.HostDevReadLatencyMs, dk.HostDevWriteLatencyMs, dk.HostDevQueueDepth = math.NaN(), math.NaN(), math.NaN()
		if c, ok := sample.ParseCacheMode(d.facts["cache_mode"]); ok {
			p.Disk.CacheDirect, p.Disk.CacheNoFlush = c.Direct, c.NoFlush
		}
		if !d.ownsThrottle() {
			p.Disk.Throttle = applied[[2]string{d.vm, d.disk}]
		}
		any := false
		for name, s := range d.series {
			if i < len(s) && !math.IsNaN(s[i]) {
				m, _ := LookupMetric("disk." + name)
				m.set(&p, s[i])
				any = true
			}
		}
		if !any {
			continue
		}
		pinRates(&p)
		for name, s := range t.Host {
			if i < len(s) && !math.IsNaN(s[i]) {
				m, _ := LookupMetric("host." + name)
				m.set(&p, s[i])
			}
		}
		out = append(out, p)
	}
	return out
}

func (e Expectation) check(got []Decision, ev *Evaluator) string {
	var match *Decision
	for i := range got {
		d := &got[i]
		if d.Rule == e.Rule && d.VM == e.VM && d.Disk == e.Disk {
			match = d
		}
	}
	what := fmt.Sprintf("rule %s on %s/%s", e.Rule, e.VM, e.Disk)
	gotS := "none"
	if match != nil {
		gotS = "apply"
		if match.Revert {
			gotS = "revert"
		}
	}
	if gotS != e.Decision {
		return fmt.Sprintf("%s: expected %s, got %s (%s)", what, e.Decision, gotS, stateOf(ev, e))
	}
	if e.Throttle != nil && match != nil && match.Action.Throttle != nil {
		var diffs []string
		for _, f := range throttleFields {
			want, ok := e.Throttle[f.name]
			if have := *f.field(match.Action.Throttle); ok && have != want {
				diffs = append(diffs, fmt.Sprintf("%s %d, expected %d", f.name, have, want))
			}
		}
		if len(diffs) > 0 {
			sort.Strings(diffs)
			return fmt.Sprintf("%s: throttle %s", what, strings.Join(diffs, "; "))
		}
	}
	return ""
}

func stateOf(ev *Evaluator, e Expectation) string {
	for _, s := range ev.States() {
		if s.Rule == e.Rule && s.VM == e.VM && s.Disk == e.Disk {
			return fmt.Sprintf("state %s since %s%s", s.State, s.Since.Format("15:04:05"), inputsString(s.Inputs))
		}
	}
	return "state inactive"
}
