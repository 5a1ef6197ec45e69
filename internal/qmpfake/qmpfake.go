// Package qmpfake is a scriptable QMP server on a real unix socket, for
// tests of code that talks QMP: handlers per command, events at any time,
// slow or broken replies, and a monitor held by a first client the way
// QEMU holds it.
package qmpfake

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// counts is how far the server got with one command.
type counts struct{ received, sent int }

// Handler answers one command: a value for "return", or a QMP error class
// and description when class is not empty.
type Handler func(args json.RawMessage) (ret any, class, desc string)

// Server is a fake QEMU monitor. It serves one client at a time; a second
// client is accepted but greeted only when the first leaves, like QEMU.
type Server struct {
	Path string

	ln net.Listener

	mu       sync.Mutex
	version  [3]int
	handlers map[string]Handler
	delay    map[string]time.Duration
	raw      map[string]string // command -> raw bytes written instead of a reply
	client   net.Conn
	wmu      sync.Mutex
	received []string
	counts   map[string]*counts // by command
	changed  chan struct{}      // closed and replaced when counts change

	sem  chan struct{} // one greeted client at a time
	wg   sync.WaitGroup
	done chan struct{}
}

// New starts a server in a temporary directory; it is closed at test end.
func New(t testing.TB) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Path: path, version: [3]int{7, 2, 0}, ln: ln,
		handlers: map[string]Handler{}, delay: map[string]time.Duration{}, raw: map[string]string{},
		sem: make(chan struct{}, 1), done: make(chan struct{}),
		counts: map[string]*counts{}, changed: make(chan struct{}),
	}
	s.Handle("qmp_capabilities", func(json.RawMessage) (any, string, string) { return struct{}{}, "", "" })
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// Handle sets the handler of a command. Unknown commands get
// CommandNotFound, as from QEMU.
func (s *Server) Handle(command string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[command] = h
}

// Reply answers command with a fixed return value.
func (s *Server) Reply(command string, ret any) {
	s.Handle(command, func(json.RawMessage) (any, string, string) { return ret, "", "" })
}

// SetVersion sets the QEMU version greeted to the next clients.
func (s *Server) SetVersion(major, minor, micro int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = [3]int{major, minor, micro}
}

// Delay holds the reply to command for d.
func (s *Server) Delay(command string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay[command] = d
}

// Raw makes the server write b (verbatim) instead of a reply to command.
// With hangup it then closes the connection.
func (s *Server) Raw(command, b string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw[command] = b
}

// Received lists the commands received so far, in order.
func (s *Server) Received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.received...)
}

// countLocked moves a command's counts and wakes the waiters.
func (s *Server) countLocked(cmd string, f func(*counts)) {
	c := s.counts[cmd]
	if c == nil {
		c = &counts{}
		s.counts[cmd] = c
	}
	f(c)
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitReceived waits until the server has read n requests of command,
// so a test knows a call is on the wire (pending) without sleeping. It
// fails the test after 10 s.
func (s *Server) WaitReceived(t testing.TB, command string, n int) {
	t.Helper()
	s.wait(t, "received", command, n, func(c counts) int { return c.received })
}

// WaitSent waits until the server has written n replies to command (a
// Raw one included), so a test knows a reply is on its way to the
// client. It fails the test after 10 s.
func (s *Server) WaitSent(t testing.TB, command string, n int) {
	t.Helper()
	s.wait(t, "sent", command, n, func(c counts) int { return c.sent })
}

func (s *Server) wait(t testing.TB, what, command string, n int, get func(counts) int) {
	t.Helper()
	limit := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		var c counts
		if p := s.counts[command]; p != nil {
			c = *p
		}
		changed := s.changed
		s.mu.Unlock()
		if get(c) >= n {
			return
		}
		select {
		case <-changed:
		case <-limit:
			t.Fatalf("qmpfake: %d of %d %s %s after 10s", get(c), n, command, what)
		}
	}
}

// Event sends an event to the current client.
func (s *Server) Event(name string, data any) error {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("qmpfake: no client")
	}
	now := time.Now()
	return s.send(c, map[string]any{
		"event": name, "data": data,
		"timestamp": map[string]int64{"seconds": now.Unix(), "microseconds": int64(now.Nanosecond() / 1000)},
	})
}

// HangUp closes the current client's connection.
func (s *Server) HangUp() {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Close stops the server and every connection.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	close(s.done)
	s.ln.Close()
	s.HangUp()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	// Like QEMU: a second client waits, ungreeted, for the first to leave.
	select {
	case s.sem <- struct{}{}:
	case <-s.done:
		return
	}
	defer func() { <-s.sem }()
	s.mu.Lock()
	s.client = c
	v := s.version
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.client == c {
			s.client = nil
		}
		s.mu.Unlock()
	}()
	greeting := map[string]any{"QMP": map[string]any{
		"version": map[string]any{
			"qemu":    map[string]int{"major": v[0], "minor": v[1], "micro": v[2]},
			"package": "qmpfake",
		},
		"capabilities": []string{"oob"},
	}}
	if s.send(c, greeting) != nil {
		return
	}
	dec := json.NewDecoder(bufio.NewReader(c))
	for {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.answer(c, req.Execute, req.Arguments, req.ID)
		}()
	}
}

func (s *Server) answer(c net.Conn, cmd string, args, id json.RawMessage) {
	s.mu.Lock()
	s.received = append(s.received, cmd)
	s.countLocked(cmd, func(c *counts) { c.received++ })
	h, ok := s.handlers[cmd]
	d := s.delay[cmd]
	raw, isRaw := s.raw[cmd]
	s.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-s.done:
			return
		}
	}
	if isRaw {
		s.wmu.Lock()
		c.Write([]byte(raw))
		s.wmu.Unlock()
		s.sent(cmd)
		return
	}
	resp := map[string]any{}
	if id != nil {
		resp["id"] = id
	}
	switch {
	case !ok:
		resp["error"] = map[string]string{"class": "CommandNotFound", "desc": "The command " + cmd + " has not been found"}
	default:
		ret, class, desc := h(args)
		if class != "" {
			resp["error"] = map[string]string{"class": class, "desc": desc}
		} else {
			resp["return"] = ret
		}
	}
	s.send(c, resp)
	s.sent(cmd)
}

func (s *Server) sent(cmd string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.countLocked(cmd, func(c *counts) { c.sent++ })
}

func (s *Server) send(c net.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err = c.Write(append(b, '\r', '\n'))
	return err
}
