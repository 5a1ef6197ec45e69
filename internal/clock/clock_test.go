package clock

import (
	"testing"
	"time"
)

func TestFakeAfterFiresOnlyWhenDue(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	c := f.After(10 * time.Second)
	f.Advance(9 * time.Second)
	select {
	case <-c:
		t.Fatal("fired early")
	default:
	}
	f.Advance(time.Second)
	select {
	case got := <-c:
		if want := start.Add(10 * time.Second); !got.Equal(want) {
			t.Fatalf("fired at %v, want %v", got, want)
		}
	default:
		t.Fatal("did not fire when due")
	}
	if got := f.Now(); !got.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("Now = %v", got)
	}
}

func TestFakeSetIgnoresThePast(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	f.Set(start.Add(-time.Hour))
	if !f.Now().Equal(start) {
		t.Fatalf("clock went back to %v", f.Now())
	}
}

func TestFakeTickerTicksWhenAdvancedAndDrops(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	tk := f.NewTicker(time.Second)
	if f.Tickers() != 1 {
		t.Fatalf("%d tickers", f.Tickers())
	}
	ticked := func() (time.Time, bool) {
		select {
		case at := <-tk.C():
			return at, true
		default:
			return time.Time{}, false
		}
	}
	f.Advance(999 * time.Millisecond)
	if _, ok := ticked(); ok {
		t.Fatal("ticked early")
	}
	f.Advance(time.Millisecond)
	if at, ok := ticked(); !ok || !at.Equal(start.Add(time.Second)) {
		t.Fatalf("tick %v %v, want one at 1s", at, ok)
	}
	// Three periods with nobody reading: one tick waits, the rest drop,
	// and the next is due a whole period after the clock's time.
	f.Advance(3 * time.Second)
	f.Advance(0)
	if _, ok := ticked(); !ok {
		t.Fatal("no tick after three periods")
	}
	if _, ok := ticked(); ok {
		t.Fatal("missed ticks were queued")
	}
	f.Advance(time.Second)
	if at, ok := ticked(); !ok || !at.Equal(start.Add(5*time.Second)) {
		t.Fatalf("tick %v %v, want one at 5s", at, ok)
	}
	tk.Stop()
	f.Advance(time.Hour)
	if _, ok := ticked(); ok || f.Tickers() != 0 {
		t.Fatal("a stopped ticker ticked")
	}
}

func TestRealTickerTicks(t *testing.T) {
	tk := Real{}.NewTicker(time.Millisecond)
	defer tk.Stop()
	select {
	case <-tk.C():
	case <-time.After(5 * time.Second):
		t.Fatal("no tick")
	}
}
