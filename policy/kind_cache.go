package policy

import (
	"fmt"

	"github.com/qtune/qtune/internal/sample"
)

// The cache block: the host cache flags of a disk's file node.
func init() {
	builtin(ActionKind{Knob: KnobCache, Attrs: []string{"direct", "no_flush"}, Parse: func(b *Block) any { return parseCache(b) },
		Describe: func(spec any) string {
			c := spec.(*CacheSpec)
			return fmt.Sprintf("direct=%v no-flush=%v", c.Direct, c.NoFlush)
		},
		InForce: func(spec any, p *sample.Point) bool {
			c := spec.(*CacheSpec)
			return p.Disk.CacheDirect == c.Direct && p.Disk.CacheNoFlush == c.NoFlush
		},
	}, func(a *Action) **CacheSpec { return &a.Cache })
}

func parseCache(x *Block) *CacheSpec {
	c, r, b, a := x.c, x.rule, x.hcl, x.a
	spec := &CacheSpec{Direct: a.boolean("direct", false), NoFlush: a.boolean("no_flush", false), AllowUnsafe: r.AllowUnsafe}
	if _, ok := a.m["direct"]; !ok {
		if _, ok := a.m["no_flush"]; !ok {
			c.at(b.DefRange, r.Name, "cache block sets nothing", "give direct and/or no_flush")
		}
	}
	if spec.NoFlush && !r.AllowUnsafe {
		c.at(a.m["no_flush"].Expr.Range(), r.Name, "no_flush = true loses guest data on a host crash",
			"set allow_unsafe = true on the rule if that is really meant")
	}
	return spec
}
