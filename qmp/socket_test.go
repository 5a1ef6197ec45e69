package qmp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goqemu "github.com/digitalocean/go-qemu/qmp"
	"go.uber.org/goleak"

	"github.com/qtune/qtune/internal/qmpfake"
	"github.com/qtune/qtune/qmp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dial(t *testing.T, s *qmpfake.Server, opt ...qmp.Option) *qmp.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, s.Path, opt...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGreetingAndCapabilities(t *testing.T) {
	s := qmpfake.New(t)
	s.SetVersion(7, 2, 22)
	c := dial(t, s)
	if v := c.Greeting().Version; v.String() != "7.2.22" || !v.AtLeast(7, 2) || v.AtLeast(7, 3) {
		t.Errorf("version %v", v)
	}
	if got := s.Received(); len(got) != 1 || got[0] != "qmp_capabilities" {
		t.Errorf("server saw %v, want qmp_capabilities first", got)
	}
}

func TestReplyOverOneMegabyte(t *testing.T) {
	s := qmpfake.New(t)
	big := strings.Repeat("x", 3<<20)
	s.Reply("query-qmp-schema", []string{big})
	c := dial(t, s)
	ret, err := c.Execute(context.Background(), "query-qmp-schema", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := json.Unmarshal(ret, &got); err != nil || len(got) != 1 || got[0] != big {
		t.Fatalf("reply of %d bytes came back wrong (err %v)", len(ret), err)
	}
}

func TestQMPErrorKeepsClass(t *testing.T) {
	s := qmpfake.New(t)
	s.Handle("block_set_io_throttle", func(json.RawMessage) (any, string, string) {
		return nil, "DeviceNotFound", "Device 'x' not found"
	})
	c := dial(t, s)
	_, err := c.Execute(context.Background(), "block_set_io_throttle", map[string]any{"id": "x"})
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Class != "DeviceNotFound" || qe.Desc != "Device 'x' not found" || qe.Command != "block_set_io_throttle" {
		t.Fatalf("err = %#v", err)
	}
	_, err = c.Execute(context.Background(), "no-such-command", nil)
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("unknown command: err = %v", err)
	}
}

func TestDeadlineLeavesConnectionUsable(t *testing.T) {
	s := qmpfake.New(t)
	release := make(chan struct{})
	s.Handle("slow", func(json.RawMessage) (any, string, string) {
		<-release // answered only once the caller has given up
		return "late", "", ""
	})
	s.Reply("fast", "ok")
	c := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Execute(ctx, "slow", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		close(release)
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		close(release)
		t.Fatalf("call returned after %v, not at its deadline", d)
	}
	ret, err := c.Execute(context.Background(), "fast", nil)
	if err != nil || string(ret) != `"ok"` {
		close(release)
		t.Fatalf("next call: %s, %v", ret, err)
	}
	// The late reply goes out before the next call's: the client reads
	// it first, and must drop it rather than hand it to that call or
	// close the connection.
	close(release)
	s.WaitSent(t, "slow", 1)
	if ret, err := c.Execute(context.Background(), "fast", nil); err != nil || string(ret) != `"ok"` {
		t.Fatalf("after late reply: %s, %v", ret, err)
	}
}

// Replies come back in another order than the calls went out: every
// third call is held until all the others are answered, and the first
// call sent is one of them.
func TestConcurrentCallsAreMatchedByID(t *testing.T) {
	s := qmpfake.New(t)
	release := make(chan struct{})
	s.Handle("echo", func(args json.RawMessage) (any, string, string) {
		var a struct{ N int }
		json.Unmarshal(args, &a)
		if a.N%3 == 0 {
			<-release
		}
		return a.N, "", ""
	})
	c := dial(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	call := func(n int) {
		defer wg.Done()
		ret, err := c.Execute(context.Background(), "echo", map[string]int{"N": n})
		if err != nil {
			errs <- err
			return
		}
		if string(ret) != fmt.Sprint(n) {
			errs <- fmt.Errorf("call %d got reply %s", n, ret)
		}
	}
	wg.Add(1)
	go call(0)
	s.WaitReceived(t, "echo", 1)
	held := 1
	for i := 1; i < 100; i++ {
		if i%3 == 0 {
			held++
		}
		wg.Add(1)
		go call(i)
	}
	s.WaitSent(t, "echo", 100-held)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestEventsInterleavedWithReplies(t *testing.T) {
	s := qmpfake.New(t)
	c := dial(t, s)
	sub := c.Subscribe(1000)
	defer sub.Close()
	stuck := c.Subscribe(1) // never read
	defer stuck.Close()
	s.Handle("ping", func(json.RawMessage) (any, string, string) {
		s.Event("JOB_STATUS_CHANGE", map[string]string{"id": "j1", "status": "running"})
		return "pong", "", ""
	})
	for i := 0; i < 50; i++ {
		if _, err := c.Execute(context.Background(), "ping", nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	got := 0
	timeout := time.After(2 * time.Second)
	for got < 50 {
		select {
		case ev := <-sub.C():
			if ev.Name != "JOB_STATUS_CHANGE" || !strings.Contains(string(ev.Data), `"running"`) || ev.Time.IsZero() {
				t.Fatalf("event %+v", ev)
			}
			got++
		case <-timeout:
			t.Fatalf("got %d of 50 events", got)
		}
	}
	if d := stuck.Dropped(); d != 49 {
		t.Errorf("stuck subscriber dropped %d, want 49 (buffer of 1)", d)
	}
	if sub.Dropped() != 0 {
		t.Errorf("reading subscriber dropped %d", sub.Dropped())
	}
}

func TestServerClosingMidReplyFailsPendingCalls(t *testing.T) {
	s := qmpfake.New(t)
	s.Raw("query-block", `{"return": [{"device": "dr`)
	s.Reply("never", "x")
	s.Delay("never", time.Hour)
	c := dial(t, s)
	errs := make(chan error, 1)
	go func() {
		_, err := c.Execute(context.Background(), "never", nil)
		errs <- err
	}()
	s.WaitReceived(t, "never", 1) // pending, its reply an hour away
	go c.Execute(context.Background(), "query-block", nil)
	s.WaitSent(t, "query-block", 1) // half a reply written: the client is mid-reply
	s.HangUp()
	select {
	case err := <-errs:
		if !errors.Is(err, qmp.ErrClosed) {
			t.Fatalf("pending call: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("pending call hung after the server went away")
	}
	<-c.Done()
	if _, err := c.Execute(context.Background(), "never", nil); !errors.Is(err, qmp.ErrClosed) {
		t.Fatalf("call after loss: %v", err)
	}
}

func TestMalformedJSONClosesCleanly(t *testing.T) {
	s := qmpfake.New(t)
	s.Raw("bad", "{\"return\": nonsense}\n")
	c := dial(t, s)
	_, err := c.Execute(context.Background(), "bad", nil)
	if !errors.Is(err, qmp.ErrClosed) || !strings.Contains(err.Error(), "malformed JSON") {
		t.Fatalf("err = %v", err)
	}
}

func TestBusySocket(t *testing.T) {
	s := qmpfake.New(t)
	dial(t, s)
	start := time.Now()
	_, err := qmp.Dial(context.Background(), s.Path, qmp.WithGreetingTimeout(200*time.Millisecond))
	if !errors.Is(err, qmp.ErrBusy) || !strings.Contains(err.Error(), s.Path) {
		t.Fatalf("err = %v, want ErrBusy naming the path", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("busy detection took %v", d)
	}
}

func TestDialErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.sock")
	_, err := qmp.Dial(context.Background(), missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
	notQMP := filepath.Join(dir, "plain")
	os.WriteFile(notQMP, nil, 0o600)
	if _, err := qmp.Dial(context.Background(), notQMP); err == nil || !strings.Contains(err.Error(), notQMP+" is not a socket (a regular file)") {
		t.Errorf("not a socket: %v", err)
	}
	if _, err := qmp.Dial(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "is not a socket (a directory)") {
		t.Errorf("a directory: %v", err)
	}
	if os.Geteuid() == 0 {
		return // root is never denied
	}
	s := qmpfake.New(t)
	os.Chmod(s.Path, 0)
	if _, err := qmp.Dial(context.Background(), s.Path); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("permission: %v", err)
	}
}

func TestCloseIsIdempotentAndEndsSubscriptions(t *testing.T) {
	s := qmpfake.New(t)
	c := dial(t, s)
	sub := c.Subscribe(4)
	c.Close()
	c.Close()
	if _, ok := <-sub.C(); ok {
		t.Fatal("subscription still open after Close")
	}
	if !errors.Is(c.Err(), qmp.ErrClosed) {
		t.Fatalf("Err = %v", c.Err())
	}
}

func TestGoQEMUAdapter(t *testing.T) {
	s := qmpfake.New(t)
	s.Reply("query-status", map[string]any{"running": true, "status": "running"})
	c := dial(t, s)
	var g goqemu.Monitor = c
	out, err := g.Run([]byte(`{"execute":"query-status"}`))
	if err != nil || !strings.Contains(string(out), `"return":{"running":true`) {
		t.Fatalf("Run: %s, %v", out, err)
	}
	out, err = g.Run([]byte(`{"execute":"bogus"}`))
	if err != nil || !strings.Contains(string(out), `"class":"CommandNotFound"`) {
		t.Fatalf("Run error reply: %s, %v", out, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	evs, _ := g.Events(ctx) // subscribed when it returns
	s.Event("STOP", nil)
	select {
	case ev := <-evs:
		if ev.Event != "STOP" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event through the adapter")
	}
	cancel()
	for range evs {
	}
}

// A call whose deadline has passed before its command is written (it
// waited behind other writers on a busy host) fails alone: nothing went
// on the wire, so the connection stays up for every other caller.
func TestExpiredDeadlineBeforeWriteLeavesConnectionUsable(t *testing.T) {
	s := qmpfake.New(t)
	s.Reply("fast", "ok")
	c := dial(t, s)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := c.Execute(ctx, "fast", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	select {
	case <-c.Done():
		t.Fatalf("the connection closed: %v", c.Err())
	default:
	}
	if ret, err := c.Execute(context.Background(), "fast", nil); err != nil || string(ret) != `"ok"` {
		t.Fatalf("next call: %s, %v", ret, err)
	}
}

func TestSocketsAndNames(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"web-2.sock", "notes.txt", "web-1.sock"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := qmp.Sockets(dir)
	if err != nil || len(got) != 2 || qmp.VMName(got[0]) != "web-1" || qmp.VMName(got[1]) != "web-2" {
		t.Fatalf("Sockets(%s) = %v, %v; want web-1.sock and web-2.sock in order", dir, got, err)
	}
}

func TestDialVMRefusesOldQEMU(t *testing.T) {
	s := qmpfake.New(t)
	s.SetVersion(2, 11, 0)
	_, err := qmp.DialVM(context.Background(), s.Path)
	if !errors.Is(err, qmp.ErrTooOld) || !strings.Contains(err.Error(), s.Path) {
		t.Fatalf("err = %v, want ErrTooOld naming the socket", err)
	}
	s.SetVersion(7, 2, 22)
	c, err := qmp.DialVM(context.Background(), s.Path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
