package agent

import (
	"math/rand/v2"
	"syscall"
	"time"
)

// Reconnect backoff for a VM whose socket does not answer as QEMU: the
// first retry after a second, doubling up to a minute, each wait jittered
// by up to ±20 % so sockets that died together are not dialled together.
const (
	backoffBase = time.Second
	backoffMax  = time.Minute
)

// backoff is the wait after the nth failed attempt in a row (n ≥ 1);
// jitter is in [0, 1).
func backoff(n int, jitter float64) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	if d > backoffMax {
		d = backoffMax
	}
	return time.Duration(float64(d) * (0.8 + 0.4*jitter))
}

// dialGate says when a runner may dial again after failures. A new
// socket file (QEMU restarted and bound it again) is dialled at once.
type dialGate struct {
	failures int
	next     time.Time
	lastErr  error
	socket   uint64 // inode of the socket file at the last failure
}

// allow reports whether to dial now; if not, the last error stands (the
// same text each cycle, so the failure log stays quiet).
func (g *dialGate) allow(now time.Time, socket uint64) (bool, error) {
	if g.failures == 0 || !now.Before(g.next) || socket != g.socket {
		return true, nil
	}
	return false, g.lastErr
}

func (g *dialGate) failed(now time.Time, socket uint64, err error) {
	g.failures++
	g.lastErr, g.socket = err, socket
	g.next = now.Add(backoff(g.failures, rand.Float64()))
}

// socketInode identifies the file at path now (0 when there is none).
func socketInode(path string) uint64 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0
	}
	return st.Ino
}

func (g *dialGate) succeeded() { *g = dialGate{} }
