package policy

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/qtune/qtune/internal/sample"
)

// The throttle block: QEMU's I/O limits of a disk.
func init() {
	builtin(ActionKind{Knob: KnobThrottle, Attrs: throttleAttrs(), Bounds: throttleBounds(), Parse: func(b *Block) any { return parseThrottle(b) },
		Describe: func(spec any) string { return ThrottleText(*spec.(*sample.Throttle)) },
		InForce: func(spec any, p *sample.Point) bool {
			cur, want := p.Disk.Throttle, *spec.(*sample.Throttle)
			cur.Group, want.Group = "", ""
			return cur == want
		},
	}, func(a *Action) **sample.Throttle { return &a.Throttle })
}

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

// ThrottleValueMax is the largest throttle limit, burst or burst length
// QEMU accepts (THROTTLE_VALUE_MAX, include/qemu/throttle.h); libvirt
// holds its blkdeviotune values to the same.
const ThrottleValueMax = 1_000_000_000_000_000

func throttleBounds() []Bound {
	var out []Bound
	for _, f := range throttleFields {
		out = append(out, Bound{Attr: f.name, Max: ThrottleValueMax, Why: "the largest throttle value QEMU accepts (THROTTLE_VALUE_MAX)"})
	}
	return out
}

func throttleAttrs() []string {
	names := []string{"group"}
	for _, f := range throttleFields {
		names = append(names, f.name)
	}
	return names
}

func throttleSchema() *hcl.BodySchema { return schemaOf(throttleAttrs()...) }

func parseThrottle(x *Block) *sample.Throttle {
	c, r, b, a := x.c, x.rule, x.hcl, x.a
	t := &sample.Throttle{Group: a.str("group", "")}
	refused := false // a limit was given but is wrong, and said so
	for _, f := range throttleFields {
		if n, ok := a.number(f.name, f.bytes); ok {
			*f.field(t) = n
		} else if a.has(f.name) {
			refused = true
		}
	}
	checkThrottle(c, r, b, a, t, refused)
	return t
}

// checkThrottle applies QEMU's rules for a throttle, so an impossible one
// is found by qtune policy check instead of by QEMU at 3 a.m.
func checkThrottle(c *collector, r *Rule, b *hcl.Block, a attrs, t *sample.Throttle, refused bool) {
	at := func(name string) hcl.Range {
		if x, ok := a.m[name]; ok {
			return x.Expr.Range()
		}
		return b.DefRange
	}
	if !t.Active() && !refused {
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
	if t.IOPSSize != 0 && t.IOPS|t.IOPSRead|t.IOPSWrite == 0 {
		c.at(at("iops_size"), r.Name, "iops_size needs an iops limit", "QEMU counts a large request as several operations only against an iops limit")
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
			// QEMU holds a burst to what its bucket can count.
			if vals[max] != 0 && vals[length] > ThrottleValueMax/vals[max] {
				c.at(at(length), r.Name, fmt.Sprintf("%s = %d is too long for %s = %d", length, vals[length], max, vals[max]),
					fmt.Sprintf("QEMU refuses a burst whose rate times length is above %d", uint64(ThrottleValueMax)))
			}
		}
	}
}

// ThrottleText is a throttle as plan and status print it.
func ThrottleText(t sample.Throttle) string {
	if !t.Active() {
		return "-"
	}
	var parts []string
	add := func(name string, v uint64, bytes bool) {
		switch {
		case v == 0:
		case bytes:
			parts = append(parts, name+"="+SizeText(v)+"/s")
		default:
			parts = append(parts, fmt.Sprintf("%s=%d", name, v))
		}
	}
	add("iops", t.IOPS, false)
	add("r_iops", t.IOPSRead, false)
	add("w_iops", t.IOPSWrite, false)
	add("bps", t.BPS, true)
	add("r_bps", t.BPSRead, true)
	add("w_bps", t.BPSWrite, true)
	if t.Group != "" {
		parts = append(parts, "group="+t.Group)
	}
	return strings.Join(parts, ",")
}
