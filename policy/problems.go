package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Problem is one finding about a policy, with its place in the file.
type Problem struct {
	Warning bool
	// Note marks a warning that explains rather than finds fault: how
	// qtune will read a rule (censored comparisons, for one).
	Note    bool
	Pos     hcl.Pos
	File    string
	Rule    string
	Summary string
	Detail  string
}

func (p Problem) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", p.File, p.Pos.Line, p.Pos.Column)
	switch {
	case p.Note:
		b.WriteString("note: ")
	case p.Warning:
		b.WriteString("warning: ")
	}
	if p.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", p.Rule)
	}
	b.WriteString(p.Summary)
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	return b.String()
}

// Problems is every error and warning found, in file order. As an error
// it lists them all, one a line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, 0, len(ps))
	for _, p := range ps {
		lines = append(lines, p.String())
	}
	return strings.Join(lines, "\n")
}

// Errors are the problems that are not warnings.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Warnings are the rest, but for notes.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning && !p.Note {
			out = append(out, p)
		}
	}
	return out
}

// Notes explain how qtune will read the policy; they are not faults.
func (ps Problems) Notes() Problems {
	var out Problems
	for _, p := range ps {
		if p.Note {
			out = append(out, p)
		}
	}
	return out
}

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		if ps[i].Pos.Line != ps[j].Pos.Line {
			return ps[i].Pos.Line < ps[j].Pos.Line
		}
		return ps[i].Pos.Column < ps[j].Pos.Column
	})
	return ps
}

// collector gathers problems during parsing and validation.
type collector struct{ ps Problems }

func (c *collector) at(r hcl.Range, rule, summary, detail string) {
	c.ps = append(c.ps, Problem{Pos: r.Start, File: r.Filename, Rule: rule, Summary: summary, Detail: detail})
}

func (c *collector) warn(r hcl.Range, rule, summary, detail string) {
	c.ps = append(c.ps, Problem{Warning: true, Pos: r.Start, File: r.Filename, Rule: rule, Summary: summary, Detail: detail})
}

func (c *collector) note(r hcl.Range, rule, summary, detail string) {
	c.ps = append(c.ps, Problem{Warning: true, Note: true, Pos: r.Start, File: r.Filename, Rule: rule, Summary: summary, Detail: detail})
}

func (c *collector) diags(rule string, ds hcl.Diagnostics) {
	for _, d := range ds {
		r := hcl.Range{}
		if d.Subject != nil {
			r = *d.Subject
		}
		p := Problem{Warning: d.Severity == hcl.DiagWarning, Pos: r.Start, File: r.Filename, Rule: rule,
			Summary: strings.TrimSuffix(d.Summary, "."), Detail: strings.TrimSuffix(d.Detail, ".")}
		c.ps = append(c.ps, p)
	}
}
