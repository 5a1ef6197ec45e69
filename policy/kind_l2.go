package policy

import (
	"fmt"
	"math"

	"github.com/zclconf/go-cty/cty"
)

// The l2_cache block: the qcow2 metadata cache of a disk.
func init() {
	builtin(ActionKind{Knob: KnobL2Cache, Attrs: []string{"size", "max", "clean_interval"}, Parse: func(b *Block) any { return parseL2(b) },
		Bounds: []Bound{
			{Attr: "size", Max: L2CacheMax, Why: l2Why},
			{Attr: "max", Max: L2CacheMax, Why: l2Why},
			{Attr: "clean_interval", Max: math.MaxUint32, Why: "the longest cache-clean-interval QEMU accepts (in seconds, an unsigned 32-bit number)"},
		},
		Describe: func(spec any) string {
			l := spec.(*L2Spec)
			if l.Auto {
				return fmt.Sprintf("full coverage (max %d bytes)", l.Max)
			}
			return fmt.Sprintf("%d bytes", l.Size)
		},
	}, func(a *Action) **L2Spec { return &a.L2Cache })
}

// L2CacheMax is the largest l2-cache-size QEMU takes whatever the image's
// cluster size: it refuses a cache of more than 2^31-1 entries ("L2 cache
// size too big"), and an entry is at least 512 bytes.
const L2CacheMax = math.MaxInt32 * 512

const l2Why = "the largest L2 cache QEMU takes for every cluster size (2^31-1 entries of 512 bytes)"

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
