package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors shared by every Monitor.
var (
	// ErrClosed is returned by calls on a monitor that was closed or whose
	// connection was lost.
	ErrClosed = errors.New("qmp: monitor closed")
	// ErrBusy is returned by Dial when another client already holds the
	// QMP socket (QEMU serves one client per monitor at a time).
	ErrBusy = errors.New("qmp: socket is held by another client")
	// ErrNotQMP is returned when the peer does not speak QMP.
	ErrNotQMP = errors.New("qmp: peer did not send a QMP greeting")
)

// Error is an error reply from QEMU. It keeps the QMP error class so that
// callers can branch on it with errors.As.
type Error struct {
	Command string // the command that failed
	Class   string // e.g. "GenericError", "DeviceNotFound", "CommandNotFound"
	Desc    string
}

func (e *Error) Error() string {
	if e.Command == "" {
		return fmt.Sprintf("qmp: %s: %s", e.Class, e.Desc)
	}
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Event is one asynchronous QMP event.
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	Time time.Time       `json:"-"`
}

// Executor runs one QMP command and returns the raw "return" value. A QMP
// error reply is returned as *Error. Every call honours ctx's deadline.
type Executor interface {
	Execute(ctx context.Context, command string, args any) (json.RawMessage, error)
}

// Monitor is the seam the rest of qtune uses: a socket Conn and a libvirt
// passthrough monitor both satisfy it.
type Monitor interface {
	Executor
	// Subscribe returns a subscription receiving every event from now on.
	// buf bounds its buffer; when it is full, events for it are dropped
	// and counted instead of blocking anyone.
	Subscribe(buf int) *Subscription
	Close() error
}

// Subscription receives events fanned out by a Hub.
type Subscription struct {
	c       chan Event
	dropped atomic.Uint64
	hub     *Hub
	once    sync.Once
}

// C delivers the events. It is closed when the subscription or its monitor
// is closed.
func (s *Subscription) C() <-chan Event { return s.c }

// Dropped counts events this subscriber missed because its buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C.
func (s *Subscription) Close() {
	s.hub.remove(s)
}

// Hub fans events out to any number of subscribers without ever blocking the
// sender: a full subscriber loses the event and its drop counter grows.
type Hub struct {
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: make(map[*Subscription]struct{})} }

// Subscribe adds a subscriber with a buffer of buf events (at least 1).
func (h *Hub) Subscribe(buf int) *Subscription {
	if buf < 1 {
		buf = 1
	}
	s := &Subscription{c: make(chan Event, buf), hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.once.Do(func() { close(s.c) })
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// Publish hands ev to every subscriber that has room.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.c <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}

// Close closes every subscription; later subscriptions are born closed.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		s.once.Do(func() { close(s.c) })
	}
}

func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
	s.once.Do(func() { close(s.c) })
}
