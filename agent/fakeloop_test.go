package agent

import (
	"testing"
	"time"

	"github.com/qtune/qtune/internal/clock"
)

// fakeLoop runs an agent's loop on a fake clock: the test moves time and
// waits for the cycle it causes, so no test waits out an interval.
type fakeLoop struct {
	clk    *clock.Fake
	every  time.Duration
	cycles chan time.Time
}

// onFakeClock must be called before Run.
func onFakeClock(a *Agent) *fakeLoop {
	l := &fakeLoop{clk: clock.NewFake(time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)), every: a.cfg.Interval,
		cycles: make(chan time.Time, 1000)}
	a.clock = l.clk
	a.afterCycle = func(now time.Time) { l.cycles <- now }
	return l
}

// cycled waits for the next cycle and returns its time. The limit is
// only there so a broken loop fails the test instead of hanging it.
func (l *fakeLoop) cycled(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-l.cycles:
		return at
	case <-time.After(20 * time.Second):
		t.Fatal("no cycle")
		return time.Time{}
	}
}

// tick moves the clock one interval on and waits for the cycle it
// starts, which must be at the new time: a cycle from anything but the
// clock's ticker fails the test.
func (l *fakeLoop) tick(t *testing.T) {
	t.Helper()
	if n := l.clk.Tickers(); n != 1 {
		t.Fatalf("%d tickers on the agent's clock, want the loop's one", n)
	}
	l.clk.Advance(l.every)
	if at := l.cycled(t); !at.Equal(l.clk.Now()) {
		t.Fatalf("cycle at %v, want one at %v", at, l.clk.Now())
	}
}
