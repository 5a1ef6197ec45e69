package policy

import (
	"fmt"

	"github.com/zclconf/go-cty/cty"
)

// The l2_cache block: the qcow2 metadata cache of a disk.
func init() {
	builtin(ActionKind{Knob: KnobL2Cache, Attrs: []string{"size", "max", "clean_interval"}, Parse: func(b *Block) any { return parseL2(b) },
		Describe: func(spec any) string {
			l := spec.(*L2Spec)
			if l.Auto {
				return fmt.Sprintf("full coverage (max %d bytes)", l.Max)
			}
			return fmt.Sprintf("%d bytes", l.Size)
		},
	}, func(a *Action) **L2Spec { return &a.L2Cache })
}

func parseL2(x *Block) *L2Spec {
	c, r, b, a := x.c, x.rule, x.hcl, x.a
	spec := &L2Spec{}
	if v, rng, ok := a.value("size"); ok {
		if v.Type() == cty.String && v.AsString() == "auto" {
			spec.Auto = true
		} else if n, ok := a.number("size", true); ok {
			spec.Size = n
			if n == 0 {
				c.at(rng, r.Name, "l2_cache size must be \"auto\" or a positive size", "")
			}
		}
	} else {
		c.at(b.DefRange, r.Name, "l2_cache needs size", "\"auto\" (cover the whole disk) or a size such as \"8MiB\"")
	}
	spec.Max, _ = a.number("max", true)
	if spec.Size != 0 && spec.Max != 0 && spec.Size > spec.Max {
		c.at(a.m["size"].Expr.Range(), r.Name, "l2_cache size is above its max", fmt.Sprintf("%d > %d", spec.Size, spec.Max))
	}
	spec.CleanInterval = a.duration("clean_interval", 0)
	return spec
}
