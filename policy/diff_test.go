package policy

import (
	"testing"
)

func TestDiffDefs(t *testing.T) {
	base := map[string][]byte{"a.hcl": []byte(`
rule "keep" {
  when = disk.write_iops > 100
  throttle { write_iops = 50 }
}
rule "change" {
  when = disk.write_iops > 100
  throttle { write_iops = 50 }
}
rule "drop" {
  when = disk.read_iops > 100
  throttle { read_iops = 50 }
}
`)}
	next := map[string][]byte{"b.hcl": []byte(`
rule "keep" {
  when = disk.write_iops > 100
  throttle { write_iops = 50 }
}
rule "change" {
  when = disk.write_iops > 100
  throttle { write_iops = 60 }
}
rule "add" {
  when = disk.read_iops > 500
  throttle { read_iops = 50 }
}
`)}
	old, _, err := Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	cur, _, err := Parse(next)
	if err != nil {
		t.Fatal(err)
	}
	d := DiffDefs(old.Defs(), cur.Defs())
	names := func(rs []RuleDef) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	if got := names(d.Added); len(got) != 1 || got[0] != "add" {
		t.Errorf("added = %v, want [add]", got)
	}
	if got := names(d.Removed); len(got) != 1 || got[0] != "drop" {
		t.Errorf("removed = %v, want [drop]", got)
	}
	if got := names(d.Changed); len(got) != 1 || got[0] != "change" {
		t.Errorf("changed = %v, want [change]", got)
	}
	if d.Changed[0].File != "b.hcl" {
		t.Errorf("changed rule's file = %q, want the new set's b.hcl", d.Changed[0].File)
	}
	if !DiffDefs(old.Defs(), old.Defs()).Empty() {
		t.Error("a set compared with itself is not empty")
	}
	// A rule moved to another file with the same definition is not a change.
	moved, _, err := Parse(map[string][]byte{"c.hcl": base["a.hcl"]})
	if err != nil {
		t.Fatal(err)
	}
	if d := DiffDefs(old.Defs(), moved.Defs()); !d.Empty() {
		t.Errorf("moving rules to another file = %+v, want no difference", d)
	}
}
