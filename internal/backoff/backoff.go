// Package backoff spaces out retries of what keeps failing (a socket that
// does not answer as QEMU, a knob that cannot be restored): doubling
// waits, capped, jittered so that what failed together is not retried
// together.
package backoff

import "time"

// The first retry comes after a second, doubling up to a minute, each
// wait jittered by up to ±20 %.
const (
	backoffBase = time.Second
	backoffMax  = time.Minute
)

// Wait is the wait after the nth failed attempt in a row (n ≥ 1);
// jitter is in [0, 1).
func Wait(n int, jitter float64) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	if d > backoffMax {
		d = backoffMax
	}
	return time.Duration(float64(d) * (0.8 + 0.4*jitter))
}
