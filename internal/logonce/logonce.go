// Package logonce keeps a failure that repeats every cycle down to a few
// log lines an on-call person can read: it is logged when it starts, when
// its message changes, and as a reminder every so often with how many
// times it happened since; its end is logged once.
package logonce

import (
	"sync"
	"time"

	"github.com/qtune/qtune/internal/clock"
)

// Limiter remembers the failures it was told about, by key (e.g. "sample/vm1").
type Limiter struct {
	clock clock.Clock
	every time.Duration // reminder period

	mu   sync.Mutex // guards seen
	seen map[string]*failure
}

type failure struct {
	msg     string
	logged  time.Time // when it was last logged
	repeats int       // times seen since then
}

// New returns a limiter that reminds of an ongoing failure every every.
func New(c clock.Clock, every time.Duration) *Limiter {
	return &Limiter{clock: c, every: every, seen: map[string]*failure{}}
}

// Failed records one occurrence of key failing with msg. log says whether
// to log it now; repeats is how many unlogged occurrences came before it
// (0 when it starts or changes).
func (l *Limiter) Failed(key, msg string) (log bool, repeats int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	f := l.seen[key]
	if f == nil || f.msg != msg {
		l.seen[key] = &failure{msg: msg, logged: now}
		return true, 0
	}
	if now.Sub(f.logged) >= l.every {
		n := f.repeats
		f.logged, f.repeats = now, 0
		return true, n
	}
	f.repeats++
	return false, 0
}

// Repeat counts one more occurrence of key's ongoing failure, whatever
// its message, without logging it; it says false (and records nothing)
// when key is not failing.
func (l *Limiter) Repeat(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.seen[key]
	if f == nil {
		return false
	}
	f.repeats++
	return true
}

// Recovered records that key works again. was says whether it was
// failing, so that the end of a failure is logged once.
func (l *Limiter) Recovered(key string) (was bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, was = l.seen[key]
	delete(l.seen, key)
	return was
}
