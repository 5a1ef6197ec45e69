package policy

import (
	"fmt"
	"strings"
)

// KnobHistogram is a disk's QEMU latency histograms. No rule sets it by
// hand: the agent turns histograms on while a rule in force reads a
// metric that needs them (see HistogramRules) and off again when none
// does. It is a knob all the same, so that what qtune turns on is
// recorded, reconciled after a restart and released like every other
// change it makes.
const KnobHistogram Knob = "histogram"

// HistogramSpec is the histogram a disk is given: the latency
// boundaries (ns) of its read, write and flush histograms.
type HistogramSpec struct {
	Boundaries []uint64 `json:"boundaries"`
}

func init() {
	RegisterAction(ActionKind{Knob: KnobHistogram, Driven: true,
		Describe: func(spec any) string {
			s, ok := spec.(*HistogramSpec)
			if !ok || s == nil {
				return "latency histograms"
			}
			var b []string
			for _, v := range s.Boundaries {
				b = append(b, fmt.Sprint(v))
			}
			return "latency histograms, boundaries " + strings.Join(b, ",") + " ns"
		},
	})
}
