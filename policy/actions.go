package policy

import (
	"fmt"
	"math"
	"math/big"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/qtune/qtune/internal/sample"
)

var zeroInput = input{p: &sample.Point{}}

var matchSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "domain"}, {Name: "disk"}, {Name: "format"}, {Name: "path"}, {Name: "meta"},
}}

func schemaOf(names ...string) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, n := range names {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	return s
}

func parseBlocks(c *collector, r *Rule, blocks hcl.Blocks, rule *hcl.Block) {
	var actions hcl.Blocks
	seenMatch := false
	for _, b := range blocks {
		if b.Type == "match" {
			if seenMatch {
				c.at(b.DefRange, r.Name, "more than one match block", "")
			}
			seenMatch = true
			parseMatch(c, r, b)
			continue
		}
		actions = append(actions, b)
	}
	switch len(actions) {
	case 0:
		c.at(rule.DefRange, r.Name, "rule has no action", "give exactly one of "+strings.Join(actionNames(), ", "))
		return
	case 1:
	default:
		c.at(actions[1].DefRange, r.Name, "rule has more than one action", fmt.Sprintf("%s and %s: a rule owns exactly one knob", actions[0].Type, actions[1].Type))
		return
	}
	parseAction(c, r, actions[0])
}

func blockAttrs(c *collector, r *Rule, b *hcl.Block, s *hcl.BodySchema, bounds ...Bound) attrs {
	content, diags := b.Body.Content(s)
	c.diags(r.Name, diags)
	a := attrs{c: c, rule: r.Name}
	if len(bounds) > 0 {
		a.bounds = map[string]Bound{}
		for _, bd := range bounds {
			a.bounds[bd.Attr] = bd
		}
	}
	if content != nil {
		a.m = content.Attributes
	}
	return a
}

func parseMatch(c *collector, r *Rule, b *hcl.Block) {
	a := blockAttrs(c, r, b, matchSchema)
	r.Match = Match{Domain: a.str("domain", ""), Disk: a.str("disk", ""), Format: a.str("format", ""), Path: a.str("path", "")}
	for _, k := range []string{"domain", "disk", "path"} {
		if at, ok := a.m[k]; ok {
			if _, err := filepath.Match(a.str(k, ""), ""); err != nil {
				c.at(at.Expr.Range(), r.Name, "match "+k+" is not a valid glob", err.Error())
			}
		}
	}
	if v, rng, ok := a.value("meta"); ok {
		if !v.Type().IsObjectType() && !v.Type().IsMapType() {
			c.at(rng, r.Name, "match meta must be a map of key = glob", "")
			return
		}
		r.Match.Meta = map[string]string{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if e.Type() != cty.String {
				c.at(rng, r.Name, "match meta values must be strings", "")
				continue
			}
			r.Match.Meta[k.AsString()] = e.AsString()
		}
	}
}

// number reads a count or a size/rate: a number, or a string with a unit.
// A value above the attribute's bound, or one that does not fit in 64
// bits, is an error naming it: it never saturates.
func (a attrs) number(name string, bytes bool) (uint64, bool) {
	v, rng, ok := a.value(name)
	if !ok {
		return 0, false
	}
	var n uint64
	text := ""
	switch {
	case v.Type() == cty.Number:
		bf := v.AsBigFloat()
		if bf.Sign() < 0 || !bf.IsInt() {
			a.c.at(rng, a.rule, name+" must be a whole number of at least 0", "got "+bf.String())
			return 0, false
		}
		var acc big.Accuracy
		n, acc = bf.Uint64()
		text = bf.Text('f', 0)
		if acc != big.Exact {
			if !a.outOfBounds(name, text, rng) {
				a.c.at(rng, a.rule, fmt.Sprintf("%s = %s is too large", name, text), fmt.Sprintf("the largest number qtune reads is %d", uint64(math.MaxUint64)))
			}
			return 0, false
		}
	case v.Type() == cty.String && bytes:
		var err error
		text = fmt.Sprintf("%q", v.AsString())
		if n, err = ParseSize(strings.TrimSuffix(v.AsString(), "/s")); err != nil {
			a.c.at(rng, a.rule, name+": "+err.Error(), "")
			return 0, false
		}
	default:
		want := "a number"
		if bytes {
			want = "a number of bytes or a size such as \"50MiB\""
		}
		a.c.at(rng, a.rule, name+" must be "+want, "got "+v.Type().FriendlyName())
		return 0, false
	}
	if b, ok := a.bounds[name]; ok && n > b.Max {
		a.outOfBounds(name, text, rng)
		return 0, false
	}
	return n, true
}

// outOfBounds reports name = text above the attribute's bound, if it
// has one.
func (a attrs) outOfBounds(name, text string, rng hcl.Range) bool {
	b, ok := a.bounds[name]
	if ok {
		a.c.at(rng, a.rule, fmt.Sprintf("%s = %s is above %d, %s", name, text, b.Max, b.Why), "")
	}
	return ok
}

func (a attrs) has(name string) bool { _, ok := a.m[name]; return ok }
