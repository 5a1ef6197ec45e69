package policy

import (
	"fmt"
	"path/filepath"
	"strings"
)

// The mirror and convert blocks: block jobs that copy a disk into a new
// image, in another directory (mirror) or beside it with another layout
// (convert), and move the VM onto it.
func init() {
	copyAttrs := []string{"format", "cluster_size", "preallocation", "extended_l2", "compression_type", "speed", "copy_mode"}
	builtin(ActionKind{Knob: KnobMirror, Job: true, Attrs: append([]string{"target_dir"}, copyAttrs...), Bounds: []Bound{jobSpeedBound},
		Parse:    func(b *Block) any { return parseMirror(b) },
		Describe: func(spec any) string { return "mirror to " + spec.(*MirrorSpec).TargetDir },
	}, func(a *Action) **MirrorSpec { return &a.Mirror })
	builtin(ActionKind{Knob: KnobConvert, Job: true, Attrs: copyAttrs, Bounds: []Bound{jobSpeedBound},
		Parse:    func(b *Block) any { return parseConvert(b) },
		Describe: func(spec any) string { return "convert to " + spec.(*ConvertSpec).Layout.String() },
	}, func(a *Action) **ConvertSpec { return &a.Convert })
}

func parseMirror(x *Block) *MirrorSpec {
	c, r, b, a := x.c, x.rule, x.hcl, x.a
	spec := &MirrorSpec{TargetDir: a.str("target_dir", "")}
	spec.Layout, spec.Speed, spec.CopyMode = parseCopy(a, "mirror")
	if spec.TargetDir == "" || !filepath.IsAbs(spec.TargetDir) {
		c.at(b.DefRange, r.Name, "mirror needs target_dir, an absolute path", "")
	}
	return spec
}

func parseConvert(x *Block) *ConvertSpec {
	c, r, b, a := x.c, x.rule, x.hcl, x.a
	spec := &ConvertSpec{}
	spec.Layout, spec.Speed, spec.CopyMode = parseCopy(a, "convert")
	l := spec.Layout
	if l.ClusterSize == 0 && l.Preallocation == "" && l.ExtendedL2 == nil && l.CompressionType == "" && !a.has("format") {
		c.at(b.DefRange, r.Name, "convert changes nothing", "give at least one of format, cluster_size, preallocation, extended_l2, compression_type")
	}
	return spec
}

// parseCopy reads what mirror and convert share: the new image's layout,
// the speed cap and the copy mode.
func parseCopy(a attrs, what string) (Layout, uint64, string) {
	l := Layout{Format: a.str("format", "qcow2"), Preallocation: a.str("preallocation", ""), CompressionType: a.str("compression_type", "")}
	l.ClusterSize, _ = a.number("cluster_size", true)
	if a.has("extended_l2") {
		v := a.boolean("extended_l2", false)
		l.ExtendedL2 = &v
	}
	speed, _ := a.number("speed", true)
	mode := a.str("copy_mode", "background")
	oneOf := func(name, val string, ok ...string) {
		for _, o := range ok {
			if val == o {
				return
			}
		}
		a.c.at(a.m[name].Expr.Range(), a.rule, fmt.Sprintf("%s %s %q is not one of %s", what, name, val, strings.Join(ok, ", ")), "")
	}
	oneOf("format", l.Format, "qcow2", "raw")
	oneOf("copy_mode", mode, "background", "write-blocking")
	if l.Preallocation != "" {
		oneOf("preallocation", l.Preallocation, "off", "metadata", "falloc", "full")
	}
	if l.CompressionType != "" {
		oneOf("compression_type", l.CompressionType, "zlib", "zstd")
	}
	if n := l.ClusterSize; n != 0 && (n < 512 || n > 2<<20 || n&(n-1) != 0) {
		a.c.at(a.m["cluster_size"].Expr.Range(), a.rule, what+" cluster_size must be a power of two from 512 to 2MiB", "")
	}
	if l.Format == "raw" && (l.ClusterSize != 0 || l.ExtendedL2 != nil || l.CompressionType != "") {
		a.c.at(a.m["format"].Expr.Range(), a.rule, what+" to raw takes no qcow2 options", "cluster_size, extended_l2 and compression_type are qcow2's")
	}
	if l.ExtendedL2 != nil && *l.ExtendedL2 && l.ClusterSize != 0 && l.ClusterSize < 16<<10 {
		a.c.at(a.m["extended_l2"].Expr.Range(), a.rule, what+" extended_l2 needs cluster_size of at least 16KiB", "")
	}
	return l, speed, mode
}
