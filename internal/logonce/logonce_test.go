package logonce

import (
	"testing"
	"time"

	"github.com/qtune/qtune/internal/clock"
)

// A failure every second for ten minutes makes a handful of lines: the
// start, one change, and a reminder every five minutes with a count.
func TestRepeatedFailureIsLoggedFewTimes(t *testing.T) {
	c := clock.NewFake(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	l := New(c, 5*time.Minute)
	lines := 0
	for i := 0; i < 600; i++ {
		msg := "connect: connection refused"
		if i >= 300 {
			msg = "not a QMP greeting"
		}
		if log, _ := l.Failed("sample/a", msg); log {
			lines++
		}
		c.Advance(time.Second)
	}
	// The start and the change at 300 s; no reminder yet.
	if lines != 2 {
		t.Fatalf("%d lines for 600 failures, want 2", lines)
	}
	c.Advance(time.Minute)
	if log, n := l.Failed("sample/a", "not a QMP greeting"); !log || n != 299 {
		t.Fatalf("reminder: log %v, repeats %d, want true 299 (301..599 s)", log, n)
	}
	if !l.Recovered("sample/a") || l.Recovered("sample/a") {
		t.Fatal("recovery is reported once")
	}
	if log, n := l.Failed("sample/a", "not a QMP greeting"); !log || n != 0 {
		t.Fatal("a failure after recovery is a new start")
	}
}

func TestKeysAreIndependent(t *testing.T) {
	l := New(clock.NewFake(time.Unix(0, 0)), time.Minute)
	if log, _ := l.Failed("a", "x"); !log {
		t.Fatal("a")
	}
	if log, _ := l.Failed("b", "x"); !log {
		t.Fatal("b starts on its own")
	}
	if log, _ := l.Failed("a", "x"); log {
		t.Fatal("a repeated")
	}
}

// A repeat in other words (the runner busy with the last try) does not
// make a new line, and counts toward the reminder's number; before any
// failure it records nothing.
func TestRepeatCountsWithoutLogging(t *testing.T) {
	c := clock.NewFake(time.Unix(0, 0))
	l := New(c, time.Minute)
	if l.Repeat("a") {
		t.Fatal("Repeat of a key that is not failing says true")
	}
	if log, _ := l.Failed("a", "x"); !log {
		t.Fatal("the first failure after a bare Repeat is not logged")
	}
	for i := 0; i < 3; i++ {
		if !l.Repeat("a") {
			t.Fatal("Repeat of a failing key says false")
		}
	}
	if log, _ := l.Failed("a", "x"); log {
		t.Fatal("the same message after repeats is logged before the reminder is due")
	}
	c.Advance(time.Minute)
	if log, n := l.Failed("a", "x"); !log || n != 4 {
		t.Fatalf("reminder: log %v, repeats %d, want true 4", log, n)
	}
}
