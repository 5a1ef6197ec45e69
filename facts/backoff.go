package facts

import (
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/qtune/qtune/internal/backoff"
)

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
	g.next = now.Add(backoff.Wait(g.failures, rand.Float64()))
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
