// Package clock gives qtune an injectable source of time so that rule
// evaluation, cooldowns and rate limits can be tested without sleeping.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock is what code that needs the time takes instead of calling time.Now.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has passed on this clock.
	After(d time.Duration) <-chan time.Time
	// NewTicker ticks every d on this clock. Like time.Ticker, it
	// drops ticks a slow reader misses rather than queueing them.
	NewTicker(d time.Duration) Ticker
}

// Ticker is what a clock's NewTicker returns.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// After is time.After.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// NewTicker is time.NewTicker.
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Fake is a clock that moves only when told to.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	tickers []*fakeTicker
}

// fakeTicker ticks when the fake is advanced past its next tick.
type fakeTicker struct {
	f     *Fake
	every time.Duration
	next  time.Time // guarded by f.mu
	c     chan time.Time
}

func (t *fakeTicker) C() <-chan time.Time { return t.c }

// Stop stops the ticker; a tick already delivered stays in the channel,
// as with time.Ticker.
func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, o := range t.f.tickers {
		if o == t {
			t.f.tickers = append(t.f.tickers[:i], t.f.tickers[i+1:]...)
			return
		}
	}
}

// NewTicker returns a ticker that ticks each time the fake is advanced
// past another d. It panics on d <= 0, as time.NewTicker does.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTicker{f: f, every: d, next: f.now.Add(d), c: make(chan time.Time, 1)}
	f.tickers = append(f.tickers, t)
	return t
}

// Tickers is how many tickers run on the fake, so a test can wait until
// a goroutine has made its ticker before advancing the clock.
func (f *Fake) Tickers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tickers)
}

type waiter struct {
	at time.Time
	c  chan time.Time
}

// NewFake returns a fake clock set to start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that fires when the fake is advanced past d.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(chan time.Time, 1)
	at := f.now.Add(d)
	if d <= 0 {
		c <- f.now
		return c
	}
	f.waiters = append(f.waiters, waiter{at: at, c: c})
	sort.Slice(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	return c
}

// Advance moves the clock forward by d and fires every waiter that is due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if w.at.After(f.now) {
			keep = append(keep, w)
			continue
		}
		w.c <- f.now
	}
	f.waiters = keep
	for _, t := range f.tickers {
		if t.next.After(f.now) {
			continue
		}
		for !t.next.After(f.now) { // one tick for however many periods passed
			t.next = t.next.Add(t.every)
		}
		select {
		case t.c <- f.now:
		default: // the reader has not taken the last tick: drop this one
		}
	}
}

// Set moves the clock to t (forward only; earlier times are ignored).
func (f *Fake) Set(t time.Time) {
	if d := t.Sub(f.Now()); d > 0 {
		f.Advance(d)
	}
}

// Waiters is how many After channels have not fired yet, so a test can
// wait until a goroutine is parked on the clock before advancing it.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}
