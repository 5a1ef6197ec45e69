package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

var fileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{{Type: "rule", LabelNames: []string{"name"}}},
}

// ruleAttrs are a rule's own attributes; its blocks are match and one
// action of a registered kind (see ruleSchema).
var ruleAttrs = []hcl.AttributeSchema{
	{Name: "when", Required: true}, {Name: "release_when"}, {Name: "for"}, {Name: "clear_after"}, {Name: "cooldown"},
	{Name: "mode"}, {Name: "priority"}, {Name: "window"}, {Name: "persist"}, {Name: "allow_unsafe"},
	{Name: "description"},
}

// LoadDir loads every *.hcl file of dir (not recursing) as one policy
// set. Files ending in .test.hcl are policy tests and are skipped. Any
// error in any file fails the whole load; warnings are returned with a
// usable set.
func LoadDir(dir string) (*Set, Problems, error) {
	srcs, err := ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	return Parse(srcs)
}

// ReadDir reads the policy files of dir (file name → content), as
// LoadDir takes them, so a caller can keep the text of a set it loaded.
func ReadDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".hcl") || strings.HasSuffix(n, ".test.hcl") {
			continue
		}
		files = append(files, filepath.Join(dir, n))
	}
	return readFiles(files)
}

// LoadPath loads a directory, or a single file.
func LoadPath(path string) (*Set, Problems, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	if st.IsDir() {
		return LoadDir(path)
	}
	return LoadFiles(path)
}

// LoadFiles parses and validates files as one set.
func LoadFiles(files ...string) (*Set, Problems, error) {
	srcs, err := readFiles(files)
	if err != nil {
		return nil, nil, err
	}
	return Parse(srcs)
}

func readFiles(files []string) (map[string][]byte, error) {
	srcs := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		srcs[f] = b
	}
	return srcs, nil
}

// Parse validates sources (file name → content) as one set.
func Parse(srcs map[string][]byte) (*Set, Problems, error) {
	names := make([]string, 0, len(srcs))
	for n := range srcs {
		names = append(names, n)
	}
	sort.Strings(names)
	c := &collector{}
	set := &Set{Files: names}
	for _, name := range names {
		set.Rules = append(set.Rules, parseFile(c, name, srcs[name])...)
	}
	checkSet(c, set)
	ps := c.ps.sorted()
	if len(ps.Errors()) > 0 {
		return nil, ps, ps.Errors()
	}
	return set, ps, nil
}

func parseFile(c *collector, name string, src []byte) []*Rule {
	f, diags := hclsyntax.ParseConfig(src, name, hcl.Pos{Line: 1, Column: 1})
	c.diags("", diags)
	if diags.HasErrors() {
		return nil
	}
	content, diags := f.Body.Content(fileSchema)
	c.diags("", diags)
	var rules []*Rule
	for _, b := range content.Blocks {
		if r := parseRule(c, b, src); r != nil {
			rules = append(rules, r)
		}
	}
	return rules
}

func parseRule(c *collector, b *hcl.Block, src []byte) *Rule {
	r := &Rule{Name: b.Labels[0], Range: b.DefRange, Mode: ModeEnforce, For: DefaultFor, Cooldown: DefaultCooldown}
	if r.Name == "" {
		c.at(b.LabelRanges[0], "", "rule name is empty", "")
	}
	content, diags := b.Body.Content(ruleSchema())
	c.diags(r.Name, diags)
	if content == nil {
		return nil
	}
	before := len(c.ps.Errors())
	a := attrs{c: c, rule: r.Name, m: content.Attributes}
	r.Description = a.str("description", "")
	r.For = a.duration("for", DefaultFor)
	r.ClearAfter = a.duration("clear_after", r.For)
	r.Cooldown = a.duration("cooldown", DefaultCooldown)
	r.Priority = a.integer("priority", 0)
	r.Persist = a.boolean("persist", false)
	r.AllowUnsafe = a.boolean("allow_unsafe", false)
	if m := a.str("mode", string(ModeEnforce)); m != string(ModeEnforce) && m != string(ModeRecommend) {
		c.at(content.Attributes["mode"].Expr.Range(), r.Name, "mode must be \"enforce\" or \"recommend\"", fmt.Sprintf("got %q", m))
	} else {
		r.Mode = Mode(m)
	}
	r.Windows = a.windows("window")
	if w, ok := content.Attributes["when"]; ok {
		r.When = w.Expr
		r.WhenText = string(w.Expr.Range().SliceBytes(src))
		checkWhen(c, r, r.When, r.WhenText, "when")
	}
	if w, ok := content.Attributes["release_when"]; ok {
		r.ReleaseWhen = w.Expr
		r.ReleaseText = string(w.Expr.Range().SliceBytes(src))
		checkWhen(c, r, r.ReleaseWhen, r.ReleaseText, "release_when")
	}
	parseBlocks(c, r, content.Blocks, b)
	censorNotes(c, r)
	histogramNote(c, r)
	timedStatsNote(c, r)
	checkSelfDefeat(c, r)
	// A rule with errors is still returned so that set-wide checks (a
	// duplicate name) see it; the set as a whole fails to load.
	r.bad = len(c.ps.Errors()) > before
	r.hash = ruleHash(r)
	return r
}

func condsText(r *Rule) string {
	if r.ReleaseWhen == nil {
		return r.WhenText
	}
	return r.WhenText + "\x00release_when " + r.ReleaseText
}

// ruleHash identifies a rule's definition, so that a reload can tell an
// unchanged rule from a changed one.
func ruleHash(r *Rule) string {
	b, _ := json.Marshal(struct {
		Match                     Match
		When                      string
		For, ClearAfter, Cooldown int64
		Mode                      Mode
		Priority                  int
		Windows                   []Window
		Persist, AllowUnsafe      bool
		Knob                      Knob
		Action                    Action
	}{r.Match, condsText(r), int64(r.For), int64(r.ClearAfter), int64(r.Cooldown), r.Mode, r.Priority, r.Windows,
		r.Persist, r.AllowUnsafe, r.Knob, r.Action})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// attrs reads constant attribute values with typed errors.
type attrs struct {
	c    *collector
	rule string
	m    hcl.Attributes
	// bounds are the largest values the hypervisor accepts, by
	// attribute (an action kind's Bounds).
	bounds map[string]Bound
}

func (a attrs) value(name string) (cty.Value, hcl.Range, bool) {
	at, ok := a.m[name]
	if !ok {
		return cty.NilVal, hcl.Range{}, false
	}
	v, diags := at.Expr.Value(nil)
	if diags.HasErrors() {
		a.c.diags(a.rule, diags)
		return cty.NilVal, at.Expr.Range(), false
	}
	if v.IsNull() {
		a.c.at(at.Expr.Range(), a.rule, name+" is null", "")
		return cty.NilVal, at.Expr.Range(), false
	}
	return v, at.Expr.Range(), true
}

func (a attrs) str(name, def string) string {
	v, r, ok := a.value(name)
	if !ok {
		return def
	}
	if v.Type() != cty.String {
		a.c.at(r, a.rule, name+" must be a string", "got "+v.Type().FriendlyName())
		return def
	}
	return v.AsString()
}

func (a attrs) boolean(name string, def bool) bool {
	v, r, ok := a.value(name)
	if !ok {
		return def
	}
	if v.Type() != cty.Bool {
		a.c.at(r, a.rule, name+" must be true or false", "got "+v.Type().FriendlyName())
		return def
	}
	return v.True()
}

func (a attrs) integer(name string, def int) int {
	v, r, ok := a.value(name)
	if !ok {
		return def
	}
	if v.Type() != cty.Number {
		a.c.at(r, a.rule, name+" must be a whole number", "got "+v.Type().FriendlyName())
		return def
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		a.c.at(r, a.rule, name+" must be a whole number", "got "+bf.String())
		return def
	}
	n, acc := bf.Int64()
	if acc != big.Exact || int64(int(n)) != n {
		a.c.at(r, a.rule, name+" = "+bf.Text('f', 0)+" is too large", "")
		return def
	}
	return int(n)
}

func (a attrs) duration(name string, def time.Duration) time.Duration {
	v, r, ok := a.value(name)
	if !ok {
		return def
	}
	if v.Type() != cty.String {
		a.c.at(r, a.rule, name+" must be a duration string such as \"90s\" or \"5m\"", "got "+v.Type().FriendlyName())
		return def
	}
	if strings.TrimSpace(v.AsString()) == "" {
		a.c.at(r, a.rule, name+" is empty", "give a duration such as \"90s\" or \"5m\"")
		return def
	}
	if strings.HasPrefix(strings.TrimSpace(v.AsString()), "-") {
		a.c.at(r, a.rule, name+" is negative", v.AsString())
		return def
	}
	d, err := ParseDuration(v.AsString())
	if err != nil {
		a.c.at(r, a.rule, name+": "+err.Error(), "")
		return def
	}
	if b, ok := a.bounds[name]; ok && uint64(d/time.Second) > b.Max {
		a.c.at(r, a.rule, fmt.Sprintf("%s = %q is above %s, %s", name, v.AsString(), time.Duration(b.Max)*time.Second, b.Why), "")
		return def
	}
	return d
}

func (a attrs) windows(name string) []Window {
	v, r, ok := a.value(name)
	if !ok {
		return nil
	}
	var list []string
	switch {
	case v.Type() == cty.String:
		list = []string{v.AsString()}
	case v.Type().IsTupleType() || v.Type().IsListType():
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.Type() != cty.String {
				a.c.at(r, a.rule, name+" must be strings such as \"01:00-05:00\"", "")
				return nil
			}
			list = append(list, e.AsString())
		}
	default:
		a.c.at(r, a.rule, name+" must be \"HH:MM-HH:MM\" or a list of them", "got "+v.Type().FriendlyName())
		return nil
	}
	var out []Window
	for _, s := range list {
		w, err := ParseWindow(s)
		if err != nil {
			a.c.at(r, a.rule, err.Error(), "")
			continue
		}
		out = append(out, w)
	}
	return out
}
