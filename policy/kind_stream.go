package policy

import "math"

// The stream block: a block job that flattens the backing chain.
func init() {
	builtin(ActionKind{Knob: KnobStream, Job: true, Attrs: []string{"speed", "base"}, Bounds: []Bound{jobSpeedBound},
		Parse: func(b *Block) any { return parseStream(b) },
		Describe: func(spec any) string {
			if s := spec.(*StreamSpec); s.Base != "" {
				return "stream the backing chain down to " + s.Base
			}
			return "stream the backing chain"
		},
	}, func(a *Action) **StreamSpec { return &a.Stream })
}

// jobSpeedBound: a block job's speed is a signed 64-bit number of bytes
// per second in QEMU (block-stream, blockdev-mirror, block-job-set-speed)
// and in libvirt's bandwidth with the BYTES flag, which refuses more.
var jobSpeedBound = Bound{Attr: "speed", Max: math.MaxInt64, Why: "the fastest block job speed QEMU and libvirt take (a signed 64-bit number of bytes/s)"}

func parseStream(x *Block) *StreamSpec {
	a := x.a
	spec := &StreamSpec{Base: a.str("base", "")}
	spec.Speed, _ = a.number("speed", true)
	return spec
}
