package qmp

import (
	"context"
	"encoding/json"
	"fmt"

	goqemu "github.com/digitalocean/go-qemu/qmp"
)

// GoQEMU adapts a Monitor to go-qemu's qmp.Monitor, so code and fakes
// written for go-qemu (qmptest, LibvirtRPCMonitor) fit beside qtune's own.
// Connect is a no-op (the Monitor is connected when made); Disconnect
// closes it.
type GoQEMU struct {
	M Monitor
	// Buffer is the event buffer of each Events call (default 64).
	Buffer int
}

var (
	_ goqemu.Monitor = (*GoQEMU)(nil)
	_ goqemu.Monitor = (*Conn)(nil)
	_ Monitor        = (*Conn)(nil)
)

// Connect, Disconnect, Run and Events make a Conn a go-qemu qmp.Monitor
// itself, so go-qemu code can take it where it takes a SocketMonitor.

// Connect does nothing: Dial connected the Conn.
func (c *Conn) Connect() error { return nil }

// Disconnect closes the Conn.
func (c *Conn) Disconnect() error { return c.Close() }

// Run executes a whole {"execute":...} command, go-qemu style.
func (c *Conn) Run(cmd []byte) ([]byte, error) { return (&GoQEMU{M: c}).Run(cmd) }

// Events streams events as go-qemu values until ctx ends.
func (c *Conn) Events(ctx context.Context) (<-chan goqemu.Event, error) {
	return (&GoQEMU{M: c}).Events(ctx)
}

// Connect does nothing: the wrapped Monitor is already connected.
func (g *GoQEMU) Connect() error { return nil }

// Disconnect closes the wrapped Monitor.
func (g *GoQEMU) Disconnect() error { return g.M.Close() }

// Run executes a whole {"execute":...,"arguments":...} command and returns
// the whole reply, as go-qemu's monitors do. A QMP error reply is returned
// as the reply body with a nil error, like go-qemu's SocketMonitor.
func (g *GoQEMU) Run(cmd []byte) ([]byte, error) {
	var c struct {
		Execute   string          `json:"execute"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(cmd, &c); err != nil {
		return nil, fmt.Errorf("qmp: decode command: %w", err)
	}
	var args any
	if len(c.Arguments) > 0 {
		args = c.Arguments
	}
	ret, err := g.M.Execute(context.Background(), c.Execute, args)
	if qe, ok := err.(*Error); ok {
		return json.Marshal(map[string]any{"error": map[string]string{"class": qe.Class, "desc": qe.Desc}})
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]json.RawMessage{"return": ret})
}

// Events streams events as go-qemu values until ctx ends.
func (g *GoQEMU) Events(ctx context.Context) (<-chan goqemu.Event, error) {
	buf := g.Buffer
	if buf <= 0 {
		buf = 64
	}
	sub := g.M.Subscribe(buf)
	out := make(chan goqemu.Event)
	go func() {
		defer close(out)
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-sub.C():
				if !ok {
					return
				}
				ge := goqemu.Event{Event: ev.Name}
				if len(ev.Data) > 0 {
					_ = json.Unmarshal(ev.Data, &ge.Data)
				}
				ge.Timestamp.Seconds = ev.Time.Unix()
				ge.Timestamp.Microseconds = int64(ev.Time.Nanosecond() / 1000)
				select {
				case out <- ge:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
