package facts

import (
	"errors"
	"testing"
	"time"
)

// Over a minute of one-second cycles a dead socket is dialled a handful
// of times, not sixty, and every refused cycle carries the same error.
func TestDialGateOverAMinute(t *testing.T) {
	var g dialGate
	now := time.Unix(0, 0)
	dead := errors.New("connect: connection refused")
	dials := 0
	for i := 0; i < 60; i++ {
		ok, err := g.allow(now, 7)
		if ok {
			dials++
			g.failed(now, 7, dead)
		} else if err != dead {
			t.Fatalf("cycle %d: error %v, want the last dial's", i, err)
		}
		now = now.Add(time.Second)
	}
	if dials < 4 || dials > 8 {
		t.Fatalf("%d dials in a minute, want 4-8", dials)
	}
	if ok, _ := g.allow(now, 8); !ok {
		t.Fatal("a new socket file (QEMU restarted) is not dialled at once")
	}
	g.succeeded()
	if ok, _ := g.allow(now, 7); !ok {
		t.Fatal("after success, dial at once")
	}
}
