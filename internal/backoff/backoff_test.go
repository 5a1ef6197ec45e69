package backoff

import (
	"testing"
	"time"
)

func TestBackoffDoublesCappedJittered(t *testing.T) {
	for _, tc := range []struct {
		n      int
		jitter float64
		want   time.Duration
	}{
		{1, 0.5, time.Second},
		{2, 0.5, 2 * time.Second},
		{4, 0.5, 8 * time.Second},
		{7, 0.5, time.Minute},
		{100, 0.5, time.Minute},
		{1, 0, 800 * time.Millisecond},
		{100, 0.999999, 72 * time.Second},
	} {
		got := Wait(tc.n, tc.jitter)
		if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("backoff(%d, %v) = %v, want %v", tc.n, tc.jitter, got, tc.want)
		}
	}
}
