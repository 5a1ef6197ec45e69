package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"

	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/clock"
)

// parked waits until the ping goroutine waits on the clock again.
func parked(t *testing.T, c *clock.Fake) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("watchdog goroutine never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
}

// A slow cycle keeps the pings going; a loop that stops making progress
// stops them, so systemd restarts the agent.
func TestWatchdogPingsWhileLoopProgresses(t *testing.T) {
	c := clock.NewFake(time.Unix(1e9, 0))
	var pings atomic.Int64
	// WatchdogSec=30s, interval 10s, call_timeout 5s: stall after 45s.
	w := newWatchdog(c, 30*time.Second, 10*time.Second, 5*time.Second, func(s string) {
		if s == "WATCHDOG=1" {
			pings.Add(1)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	w.run(ctx, &wg)
	defer func() { cancel(); wg.Wait() }()

	step := func() int64 {
		parked(t, c)
		before := pings.Load()
		c.Advance(15 * time.Second)
		parked(t, c)
		return pings.Load() - before
	}
	// A slow cycle: 40 s without progress, still under the stall limit.
	for i := 0; i < 2; i++ {
		if n := step(); n != 1 {
			t.Fatalf("tick %d of a slow cycle: %d pings, want 1", i, n)
		}
	}
	w.progress()
	if n := step(); n != 1 {
		t.Fatalf("after progress: %d pings, want 1", n)
	}
	// Wedged: 15 s, 30 s, 45 s... since the last progress.
	step()
	step()
	for i := 0; i < 3; i++ {
		if n := step(); n != 0 {
			t.Fatalf("wedged loop still pinged %d times", n)
		}
	}
	w.progress()
	if n := step(); n != 1 {
		t.Fatalf("loop back: %d pings, want 1", n)
	}
}

func TestWatchdogStallNeverShorterThanWindow(t *testing.T) {
	w := newWatchdog(clock.NewFake(time.Unix(0, 0)), 2*time.Minute, time.Second, time.Second, func(string) {})
	if w.stall != 2*time.Minute || w.every != time.Minute {
		t.Fatalf("stall %v every %v", w.stall, w.every)
	}
}

func TestWatchdogWarning(t *testing.T) {
	for _, tc := range []struct {
		window, interval time.Duration
		warn             bool
	}{
		{30 * time.Second, 10 * time.Second, false},
		{30 * time.Second, 15 * time.Second, false},
		{30 * time.Second, 20 * time.Second, true},
		{30 * time.Second, time.Minute, true},
		{0, time.Minute, false},
	} {
		got := watchdogWarning(tc.window, tc.interval)
		if (got != "") != tc.warn || (tc.warn && !strings.Contains(got, "WatchdogSec")) {
			t.Errorf("window %v interval %v: %q", tc.window, tc.interval, got)
		}
	}
}

// Under systemd's watchdog the agent warns about an interval too close to
// the window and pings from its own goroutine, more often than it cycles.
func TestAgentWatchdogUnderSystemd(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	vm := fakeVM(t)
	dir := t.TempDir()
	if err := os.Symlink(vm.Path, filepath.Join(dir, "fake.sock")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.QMPDir, cfg.PolicyDir, cfg.StateDir = dir, "../examples/policy.d", t.TempDir()
	cfg.ControlSocket = filepath.Join(cfg.StateDir, "control.sock")
	cfg.Listen, cfg.Interval, cfg.CallTimeout = "127.0.0.1:0", time.Second, 500*time.Millisecond
	var logs syncBuffer
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn}))
	var mu sync.Mutex
	pings := 0
	a.SetNotify(func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if s == "WATCHDOG=1" {
			pings++
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := pings
		mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watchdog pings in 20s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "WatchdogSec") {
		t.Errorf("no warning about interval against the watchdog window:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
