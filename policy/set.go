package policy

import (
	"fmt"
	"sort"
	"strings"
)

// checkSet finds what is wrong between rules: a name used twice, and two
// rules that may own the same knob of the same disk at the same priority
// (a warning: evaluation then picks one deterministically).
func checkSet(c *collector, s *Set) {
	byName := map[string]*Rule{}
	for _, r := range s.Rules {
		if first, dup := byName[r.Name]; dup {
			c.at(r.Range, r.Name, "duplicate rule name", fmt.Sprintf("first defined at %s:%d:%d", first.Range.Filename, first.Range.Start.Line, first.Range.Start.Column))
			continue
		}
		byName[r.Name] = r
	}
	for i, a := range s.Rules {
		for _, b := range s.Rules[i+1:] {
			if !a.bad && !b.bad && a.Knob == b.Knob && a.Priority == b.Priority && a.Name != b.Name && mayOverlap(a.Match, b.Match) {
				c.warn(b.Range, b.Name, fmt.Sprintf("may own the %s knob of the same disks as rule %q at the same priority %d", b.Knob, a.Name, a.Priority),
					"give one a higher priority; until then "+tieBreak(b.Knob))
			}
		}
	}
}

func tieBreak(k Knob) string {
	if k == KnobThrottle {
		return "the most restrictive throttle wins"
	}
	return "the rule whose name sorts first wins"
}

// mayOverlap is false only when two matches certainly select different
// disks: some key has two different literal (glob-free) values.
func mayOverlap(a, b Match) bool {
	differ := func(x, y string) bool {
		return x != "" && y != "" && !strings.ContainsAny(x+y, "*?[") && x != y
	}
	if differ(a.Domain, b.Domain) || differ(a.Disk, b.Disk) || differ(a.Format, b.Format) || differ(a.Path, b.Path) {
		return false
	}
	for k, v := range a.Meta {
		if w, ok := b.Meta[k]; ok && differ(v, w) {
			return false
		}
	}
	return true
}

// Summary describes a set for qtune policy check: its rules and the knobs
// they own.
func (s *Set) Summary() string {
	var b strings.Builder
	knobs := map[Knob][]string{}
	for _, r := range s.Rules {
		knobs[r.Knob] = append(knobs[r.Knob], r.Name)
	}
	fmt.Fprintf(&b, "%d rules in %d files\n", len(s.Rules), len(s.Files))
	for _, r := range s.Rules {
		fmt.Fprintf(&b, "  %-28s %-9s %-8s priority %d, for %s, clear after %s, cooldown %s%s\n",
			r.Name, r.Mode, r.Knob, r.Priority, r.For, r.ClearAfter, r.Cooldown, windowsString(r.Windows))
	}
	names := make([]string, 0, len(knobs))
	for k := range knobs {
		names = append(names, string(k))
	}
	sort.Strings(names)
	b.WriteString("knobs owned:")
	for _, k := range names {
		fmt.Fprintf(&b, " %s (%s)", k, strings.Join(knobs[Knob(k)], ", "))
	}
	b.WriteString("\n")
	return b.String()
}

func windowsString(ws []Window) string {
	if len(ws) == 0 {
		return ""
	}
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.String()
	}
	return ", window " + strings.Join(parts, ",")
}
