package policy

// The stream block: a block job that flattens the backing chain.
func init() {
	builtin(ActionKind{Knob: KnobStream, Job: true, Attrs: []string{"speed", "base"}, Parse: func(b *Block) any { return parseStream(b) },
		Describe: func(spec any) string {
			if s := spec.(*StreamSpec); s.Base != "" {
				return "stream the backing chain down to " + s.Base
			}
			return "stream the backing chain"
		},
	}, func(a *Action) **StreamSpec { return &a.Stream })
}

func parseStream(x *Block) *StreamSpec {
	a := x.a
	spec := &StreamSpec{Base: a.str("base", "")}
	spec.Speed, _ = a.number("speed", true)
	return spec
}
