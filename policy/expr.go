package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// scopes are the variable roots of an expression.
var scopes = map[string]bool{"disk": true, "vm": true, "host": true}

// checkWhen validates a condition (when or release_when, named attr):
// every variable a known metric, every function a window function used as
// fn(metric, "duration"), and the whole a bool. Window calls are renamed
// to per-site functions here; both conditions of a rule share the sites.
func checkWhen(c *collector, r *Rule, expr hcl.Expression, text, attr string) {
	before := len(c.ps.Errors())
	syn, ok := expr.(hclsyntax.Expression)
	if !ok {
		c.at(expr.Range(), r.Name, attr+" must be an expression", "")
		return
	}
	refs := map[string]bool{}
	for _, tr := range expr.Variables() {
		name, ok := metricName(tr)
		if !ok {
			c.at(tr.SourceRange(), r.Name, "unknown metric "+traversalString(tr), suggest(traversalString(tr)))
			continue
		}
		refs[name] = true
	}
	hclsyntax.VisitAll(syn, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok {
			return nil
		}
		site, err := windowCall(call, len(r.sites))
		if err != "" {
			c.at(call.Range(), r.Name, err, "")
			return nil
		}
		r.sites = append(r.sites, site)
		call.Name = site.id
		return nil
	})
	for n := range refs {
		if !slices.Contains(r.refs, n) {
			r.refs = append(r.refs, n)
		}
	}
	if len(c.ps.Errors()) > before {
		return
	}
	findCensorable(r, syn, text)
	// Evaluate once with every metric known, to find type errors now
	// rather than at 3 a.m.
	v, diags := expr.Value(typeCheckContext(r))
	c.diags(r.Name, diags)
	if !diags.HasErrors() && v.Type() != cty.Bool && v.Type() != cty.DynamicPseudoType {
		c.at(expr.Range(), r.Name, attr+" must be true or false", "it is a "+v.Type().FriendlyName())
	}
}

func metricName(tr hcl.Traversal) (string, bool) {
	if len(tr) != 2 || !scopes[tr.RootName()] {
		return "", false
	}
	attr, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		return "", false
	}
	name := tr.RootName() + "." + attr.Name
	_, known := LookupMetric(name)
	return name, known
}

func traversalString(tr hcl.Traversal) string {
	var b strings.Builder
	b.WriteString(tr.RootName())
	for _, s := range tr[1:] {
		switch t := s.(type) {
		case hcl.TraverseAttr:
			b.WriteString("." + t.Name)
		case hcl.TraverseIndex:
			b.WriteString("[...]")
		}
	}
	return b.String()
}

// suggest names the closest metric, for typos.
func suggest(name string) string {
	best, bestD := "", 4
	for _, m := range Metrics {
		if d := editDistance(name, m.Name); d < bestD {
			best, bestD = m.Name, d
		}
	}
	if best == "" {
		return "see `qtune policy metrics` for the list"
	}
	return fmt.Sprintf("did you mean %s?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// windowCall checks fn(metric, "duration") and returns its site.
func windowCall(call *hclsyntax.FunctionCallExpr, n int) (windowSite, string) {
	if _, ok := WindowFuncs[call.Name]; !ok {
		return windowSite{}, fmt.Sprintf("unknown function %s (window functions: avg_over, max_over, min_over, p50_over, p95_over)", call.Name)
	}
	if len(call.Args) != 2 {
		return windowSite{}, fmt.Sprintf("%s takes a metric and a duration, e.g. %s(disk.write_iops, \"1m\")", call.Name, call.Name)
	}
	st, ok := call.Args[0].(*hclsyntax.ScopeTraversalExpr)
	if !ok {
		return windowSite{}, fmt.Sprintf("the first argument of %s must be a metric such as disk.write_iops", call.Name)
	}
	name, known := metricName(st.Traversal)
	if !known {
		return windowSite{}, fmt.Sprintf("unknown metric %s in %s", traversalString(st.Traversal), call.Name)
	}
	if m, _ := LookupMetric(name); m.Type != cty.Number {
		return windowSite{}, fmt.Sprintf("%s needs a numeric metric; %s is a %s", call.Name, name, m.Type.FriendlyName())
	}
	lit, ok := call.Args[1].(*hclsyntax.TemplateExpr)
	if !ok || !lit.IsStringLiteral() {
		return windowSite{}, fmt.Sprintf("the second argument of %s must be a literal duration such as \"1m\"", call.Name)
	}
	s, _ := lit.Value(nil)
	d, err := ParseDuration(s.AsString())
	if err != nil || d <= 0 {
		return windowSite{}, fmt.Sprintf("%s window: %q is not a positive duration", call.Name, s.AsString())
	}
	return windowSite{fn: call.Name, metric: name, window: d, id: fmt.Sprintf("__%s_%d", call.Name, n)}, ""
}

// evalContext builds the HCL context of one evaluation: the scope
// objects, and the per-site window functions returning their values.
func evalContext(r *Rule, in input, windowVals []cty.Value) *hcl.EvalContext {
	ctx := &hcl.EvalContext{
		Variables: scopeObjects(r.refs, in),
		Functions: map[string]function.Function{},
	}
	for i, s := range r.sites {
		v := windowVals[i]
		ctx.Functions[s.id] = function.New(&function.Spec{
			Params: []function.Parameter{
				{Name: "metric", Type: cty.DynamicPseudoType, AllowUnknown: true, AllowNull: true},
				{Name: "window", Type: cty.String},
			},
			Type: function.StaticReturnType(cty.Number),
			Impl: func([]cty.Value, cty.Type) (cty.Value, error) { return v, nil },
		})
	}
	return ctx
}

// typeCheckContext has every metric at a known zero value of its type.
func typeCheckContext(r *Rule) *hcl.EvalContext {
	vals := make([]cty.Value, len(r.sites))
	for i := range vals {
		vals[i] = cty.Zero
	}
	return evalContext(r, zeroInput, vals)
}
