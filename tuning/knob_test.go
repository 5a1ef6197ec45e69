package tuning

import (
	"testing"

	"github.com/qtune/qtune/internal/sample"
)

// Audit lines and status show limits as the integers an SRE wrote.
func TestKnobStateStringIntegers(t *testing.T) {
	for _, tc := range []struct {
		s    KnobState
		want string
	}{
		{KnobState{Throttle: &sample.Throttle{BPSWrite: 100 << 20}}, "bps_wr=104857600"},
		{KnobState{Throttle: &sample.Throttle{IOPSWrite: 256, IOPSWriteMax: 1 << 40}}, "iops_wr=256 iops_wr_max=1099511627776"},
		{KnobState{Throttle: &sample.Throttle{}}, "unthrottled"},
		{KnobState{Throttle: &sample.Throttle{IOPS: 10, Group: "g1"}}, "iops=10 group=g1"},
		{KnobState{L2: &L2State{Size: 64 << 20}}, "l2-cache-size=67108864"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
