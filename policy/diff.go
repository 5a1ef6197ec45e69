package policy

import "sort"

// Hash identifies the rule's definition: two rules with the same name
// and hash act the same way. It is what a reload uses to decide whether
// a rule changed.
func (r *Rule) Hash() string { return r.hash }

// Rule returns the rule called name, or nil.
func (s *Set) Rule(name string) *Rule {
	for _, r := range s.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// RuleDef is a rule's identity as the agent reports it: its name, the
// file it is defined in and the hash of its definition.
type RuleDef struct {
	Name string `json:"name"`
	File string `json:"file"`
	Hash string `json:"hash"`
}

// Defs returns the identity of every rule of the set, in name order.
func (s *Set) Defs() []RuleDef {
	out := make([]RuleDef, 0, len(s.Rules))
	for _, r := range s.Rules {
		out = append(out, RuleDef{Name: r.Name, File: r.Range.Filename, Hash: r.hash})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SetDiff is what replacing one policy set by another changes, by rule
// name: rules only the new set has, rules only the old set has, and
// rules both have with different definitions.
type SetDiff struct {
	Added   []RuleDef
	Removed []RuleDef
	Changed []RuleDef // as defined in the new set
}

// Empty reports whether the two sets define the same rules.
func (d SetDiff) Empty() bool { return len(d.Added)+len(d.Removed)+len(d.Changed) == 0 }

// DiffDefs compares the rules in force (old) with a candidate set (new).
func DiffDefs(old, new []RuleDef) SetDiff {
	was := make(map[string]RuleDef, len(old))
	for _, r := range old {
		was[r.Name] = r
	}
	var d SetDiff
	seen := map[string]bool{}
	for _, r := range new {
		seen[r.Name] = true
		o, ok := was[r.Name]
		switch {
		case !ok:
			d.Added = append(d.Added, r)
		case o.Hash != r.Hash:
			d.Changed = append(d.Changed, r)
		}
	}
	for _, r := range old {
		if !seen[r.Name] {
			d.Removed = append(d.Removed, r)
		}
	}
	return d
}
