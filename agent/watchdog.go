package agent

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qtune/qtune/internal/clock"
)

// watchdog pings the service manager (WATCHDOG=1) from its own goroutine,
// every half watchdog window, for as long as the main loop shows progress.
// A slow cycle (a VM at its call deadline, a long revert) therefore does
// not get the agent killed, but a loop that makes no progress for stall
// stops the pings, and systemd restarts the agent one window later.
type watchdog struct {
	clock  clock.Clock
	every  time.Duration // ping period: half of WATCHDOG_USEC
	stall  time.Duration // no progress for this long: stop pinging
	notify func(string)

	last atomic.Int64 // UnixNano of the main loop's last progress
}

// newWatchdog sizes the stall limit from the loop's own pace: a healthy
// cycle ends within an interval plus a call deadline, so three of those
// without progress means the loop is wedged, not slow. It is never
// shorter than the watchdog window itself.
func newWatchdog(c clock.Clock, window, interval, callTimeout time.Duration, notify func(string)) *watchdog {
	stall := 3 * (interval + callTimeout)
	if stall < window {
		stall = window
	}
	w := &watchdog{clock: c, every: window / 2, stall: stall, notify: notify}
	w.progress()
	return w
}

// progress records that the main loop is alive.
func (w *watchdog) progress() { w.last.Store(w.clock.Now().UnixNano()) }

// stalled says whether the main loop has made no progress for too long.
func (w *watchdog) stalled() bool {
	return w.clock.Now().Sub(time.Unix(0, w.last.Load())) > w.stall
}

// run pings until ctx ends.
func (w *watchdog) run(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.clock.After(w.every):
				if !w.stalled() {
					w.notify("WATCHDOG=1")
				}
			}
		}
	}()
}

// watchdogWarning says what is wrong with interval for a watchdog window
// of window, or "" when they fit: the loop needs room for a cycle that
// runs into its call deadline before the stall limit.
func watchdogWarning(window, interval time.Duration) string {
	if window <= 0 {
		return ""
	}
	if interval*2 > window {
		return "interval is more than half of the systemd watchdog window (WatchdogSec): a wedged loop is told from a slow cycle only after 3 x (interval + call_timeout); lower interval or raise WatchdogSec"
	}
	return ""
}
