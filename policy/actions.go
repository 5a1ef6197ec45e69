package policy

import (
	"fmt"
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

// throttleFields maps the throttle block's attributes to sample.Throttle,
// with whether each is a rate (bytes/s, accepts "50MiB").
var throttleFields = []struct {
	name  string
	bytes bool
	field func(t *sample.Throttle) *uint64
}{
	{"total_iops", false, func(t *sample.Throttle) *uint64 { return &t.IOPS }},
	{"read_iops", false, func(t *sample.Throttle) *uint64 { return &t.IOPSRead }},
	{"write_iops", false, func(t *sample.Throttle) *uint64 { return &t.IOPSWrite }},
	{"total_bps", true, func(t *sample.Throttle) *uint64 { return &t.BPS }},
	{"read_bps", true, func(t *sample.Throttle) *uint64 { return &t.BPSRead }},
	{"write_bps", true, func(t *sample.Throttle) *uint64 { return &t.BPSWrite }},
	{"total_iops_max", false, func(t *sample.Throttle) *uint64 { return &t.IOPSMax }},
	{"read_iops_max", false, func(t *sample.Throttle) *uint64 { return &t.IOPSReadMax }},
	{"write_iops_max", false, func(t *sample.Throttle) *uint64 { return &t.IOPSWriteMax }},
	{"total_bps_max", true, func(t *sample.Throttle) *uint64 { return &t.BPSMax }},
	{"read_bps_max", true, func(t *sample.Throttle) *uint64 { return &t.BPSReadMax }},
	{"write_bps_max", true, func(t *sample.Throttle) *uint64 { return &t.BPSWriteMax }},
	{"total_iops_max_length", false, func(t *sample.Throttle) *uint64 { return &t.IOPSMaxLen }},
	{"read_iops_max_length", false, func(t *sample.Throttle) *uint64 { return &t.IOPSReadMaxLen }},
	{"write_iops_max_length", false, func(t *sample.Throttle) *uint64 { return &t.IOPSWriteMaxLen }},
	{"total_bps_max_length", false, func(t *sample.Throttle) *uint64 { return &t.BPSMaxLen }},
	{"read_bps_max_length", false, func(t *sample.Throttle) *uint64 { return &t.BPSReadMaxLen }},
	{"write_bps_max_length", false, func(t *sample.Throttle) *uint64 { return &t.BPSWriteMaxLen }},
	{"iops_size", true, func(t *sample.Throttle) *uint64 { return &t.IOPSSize }},
}

func schemaOf(names ...string) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, n := range names {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n})
	}
	return s
}

var throttleSchema = func() *hcl.BodySchema {
	names := []string{"group"}
	for _, f := range throttleFields {
		names = append(names, f.name)
	}
	return schemaOf(names...)
}()

var (
	cacheSchema   = schemaOf("direct", "no_flush")
	l2Schema      = schemaOf("size", "max", "clean_interval")
	streamSchema  = schemaOf("speed", "base")
	mirrorSchema  = schemaOf("target_dir", "format", "cluster_size", "preallocation", "extended_l2", "compression_type", "speed", "copy_mode")
	convertSchema = schemaOf("format", "cluster_size", "preallocation", "extended_l2", "compression_type", "speed", "copy_mode")
)

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
		c.at(rule.DefRange, r.Name, "rule has no action", "give exactly one of throttle, cache, l2_cache, stream, mirror, convert")
		return
	case 1:
	default:
		c.at(actions[1].DefRange, r.Name, "rule has more than one action", fmt.Sprintf("%s and %s: a rule owns exactly one knob", actions[0].Type, actions[1].Type))
		return
	}
	b := actions[0]
	r.Knob = Knob(b.Type)
	switch b.Type {
	case "throttle":
		r.Action.Throttle = parseThrottle(c, r, b)
	case "cache":
		r.Action.Cache = parseCache(c, r, b)
	case "l2_cache":
		r.Action.L2Cache = parseL2(c, r, b)
	case "stream":
		r.Action.Stream = parseStream(c, r, b)
	case "mirror":
		r.Action.Mirror = parseMirror(c, r, b)
	case "convert":
		r.Action.Convert = parseConvert(c, r, b)
	}
}

func blockAttrs(c *collector, r *Rule, b *hcl.Block, s *hcl.BodySchema) attrs {
	content, diags := b.Body.Content(s)
	c.diags(r.Name, diags)
	a := attrs{c: c, rule: r.Name}
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
func (a attrs) number(name string, bytes bool) (uint64, bool) {
	v, rng, ok := a.value(name)
	if !ok {
		return 0, false
	}
	switch {
	case v.Type() == cty.Number:
		bf := v.AsBigFloat()
		if bf.Sign() < 0 || !bf.IsInt() {
			a.c.at(rng, a.rule, name+" must be a whole number of at least 0", "got "+bf.String())
			return 0, false
		}
		n, _ := bf.Uint64()
		return n, true
	case v.Type() == cty.String && bytes:
		n, err := ParseSize(strings.TrimSuffix(v.AsString(), "/s"))
		if err != nil {
			a.c.at(rng, a.rule, name+": "+err.Error(), "")
			return 0, false
		}
		return n, true
	default:
		want := "a number"
		if bytes {
			want = "a number of bytes or a size such as \"50MiB\""
		}
		a.c.at(rng, a.rule, name+" must be "+want, "got "+v.Type().FriendlyName())
		return 0, false
	}
}

func parseThrottle(c *collector, r *Rule, b *hcl.Block) *sample.Throttle {
	a := blockAttrs(c, r, b, throttleSchema)
	t := &sample.Throttle{Group: a.str("group", "")}
	for _, f := range throttleFields {
		if n, ok := a.number(f.name, f.bytes); ok {
			*f.field(t) = n
		}
	}
	checkThrottle(c, r, b, a, t)
	return t
}

// checkThrottle applies QEMU's rules for a throttle, so an impossible one
// is found by qtune policy check instead of by QEMU at 3 a.m.
func checkThrottle(c *collector, r *Rule, b *hcl.Block, a attrs, t *sample.Throttle) {
	at := func(name string) hcl.Range {
		if x, ok := a.m[name]; ok {
			return x.Expr.Range()
		}
		return b.DefRange
	}
	if !t.Active() {
		c.at(b.DefRange, r.Name, "throttle sets no limit", "all zeros would turn throttling off; give at least one of total/read/write iops or bps")
	}
	for _, kind := range []string{"iops", "bps"} {
		total, _ := a.m["total_"+kind]
		_, rd := a.m["read_"+kind]
		_, wr := a.m["write_"+kind]
		if total != nil && (rd || wr) {
			c.at(total.Expr.Range(), r.Name, "total_"+kind+" cannot be combined with read_"+kind+" or write_"+kind, "QEMU refuses a total limit mixed with a read/write split")
		}
	}
	vals := map[string]uint64{}
	for _, f := range throttleFields {
		vals[f.name] = *f.field(t)
	}
	for _, dir := range []string{"total", "read", "write"} {
		for _, kind := range []string{"iops", "bps"} {
			base, max, length := dir+"_"+kind, dir+"_"+kind+"_max", dir+"_"+kind+"_max_length"
			if vals[max] != 0 && vals[base] == 0 {
				c.at(at(max), r.Name, max+" needs "+base, "a burst is a burst above a base limit")
			}
			if vals[max] != 0 && vals[base] != 0 && vals[max] < vals[base] {
				c.at(at(max), r.Name, max+" is below "+base, fmt.Sprintf("%d < %d", vals[max], vals[base]))
			}
			if vals[length] != 0 && vals[max] == 0 {
				c.at(at(length), r.Name, length+" needs "+max, "")
			}
		}
	}
}

func parseCache(c *collector, r *Rule, b *hcl.Block) *CacheSpec {
	a := blockAttrs(c, r, b, cacheSchema)
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

func parseL2(c *collector, r *Rule, b *hcl.Block) *L2Spec {
	a := blockAttrs(c, r, b, l2Schema)
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

func parseStream(c *collector, r *Rule, b *hcl.Block) *StreamSpec {
	a := blockAttrs(c, r, b, streamSchema)
	spec := &StreamSpec{Base: a.str("base", "")}
	spec.Speed, _ = a.number("speed", true)
	return spec
}

func parseMirror(c *collector, r *Rule, b *hcl.Block) *MirrorSpec {
	a := blockAttrs(c, r, b, mirrorSchema)
	spec := &MirrorSpec{TargetDir: a.str("target_dir", "")}
	spec.Layout, spec.Speed, spec.CopyMode = parseCopy(a, "mirror")
	if spec.TargetDir == "" || !filepath.IsAbs(spec.TargetDir) {
		c.at(b.DefRange, r.Name, "mirror needs target_dir, an absolute path", "")
	}
	return spec
}

func parseConvert(c *collector, r *Rule, b *hcl.Block) *ConvertSpec {
	a := blockAttrs(c, r, b, convertSchema)
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

func (a attrs) has(name string) bool { _, ok := a.m[name]; return ok }
