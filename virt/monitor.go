package virt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/qtune/qtune/qmp"
)

// Passthrough is a QMP monitor for one libvirt domain, through libvirt's
// QEMUDomainMonitorCommand. Every command sent this way marks the domain
// "tainted: custom-monitor" in libvirt, and changes made this way are
// invisible in the domain XML: qtune uses it only for what libvirt cannot
// do live (blockdev-reopen, latency histograms) and only when allowed.
// Events come from SubscribeQEMUEvents, which does not taint.
type Passthrough struct {
	v      *Libvirt
	domain string
	hub    *qmp.Hub

	mu      sync.Mutex
	cancel  context.CancelFunc // of the event pump, nil until Subscribe
	stopped bool
}

var _ qmp.Monitor = (*Passthrough)(nil)

// Monitor returns a passthrough QMP monitor for domain.
func (v *Libvirt) Monitor(domain string) *Passthrough {
	return &Passthrough{v: v, domain: domain, hub: qmp.NewHub()}
}

// Execute runs a QMP command through libvirt. libvirt returns a QMP error
// in the reply body with a nil error; it becomes *Error here like on a
// socket.
func (p *Passthrough) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	d, err := p.v.lookup(ctx, p.domain)
	if err != nil {
		return nil, err
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: encode arguments: %w", command, err)
	}
	var out string
	err = p.v.call(ctx, "qemu-monitor-command "+command+" on "+p.domain, func(l *libvirt.Libvirt) error {
		var err error
		out, err = l.QEMUDomainMonitorCommand(d, string(b), 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	return decodePassthroughReply(command, []byte(out))
}

func decodePassthroughReply(command string, body []byte) (json.RawMessage, error) {
	ret, err := qmp.DecodeReply(command, body)
	if err != nil && !errors.As(err, new(*qmp.Error)) {
		return nil, fmt.Errorf("qmp %s through libvirt: %w", command, err)
	}
	return ret, err
}

// Subscribe returns QEMU's events for the domain; the first call starts
// the subscription, which is renewed after libvirtd reconnects.
func (p *Passthrough) Subscribe(buf int) *qmp.Subscription {
	s := p.hub.Subscribe(buf)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel == nil && !p.stopped {
		ctx, cancel := context.WithCancel(context.Background())
		p.cancel = cancel
		p.v.onReconnect(func(l *libvirt.Libvirt) { go p.pump(ctx, l) })
		if l := p.v.current(); l != nil {
			go p.pump(ctx, l)
		}
	}
	return s
}

// pump forwards one connection's QEMU events to the hub until the
// connection or the monitor ends.
func (p *Passthrough) pump(ctx context.Context, l *libvirt.Libvirt) {
	evs, err := l.SubscribeQEMUEvents(ctx, p.domain)
	if err != nil {
		p.v.log.Warn("subscribe to QEMU events failed", "domain", p.domain, "error", err.Error())
		return
	}
	for ev := range evs {
		var body struct {
			Data json.RawMessage `json:"data"`
		}
		json.Unmarshal(ev.Details, &body)
		data := body.Data
		if data == nil {
			data = ev.Details
		}
		p.hub.Publish(qmp.Event{Name: ev.Event, Data: data,
			Time: time.Unix(int64(ev.Seconds), int64(ev.Microseconds)*1000)})
	}
}

// Close stops the event subscription. The libvirt connection stays open.
func (p *Passthrough) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.cancel != nil {
		p.cancel()
	}
	p.hub.Close()
	return nil
}

// DomainEvent is something libvirt says happened to a domain.
type DomainEvent struct {
	Domain string
	// Kind is "lifecycle", "block-job", "tunable" (a block throttle was
	// changed, by qtune or anyone else), "records" (qtune's metadata
	// element was written, by a qtune or by hand), "device-added",
	// "device-removed", or "reconnected" (no Domain: the connection came
	// back, and events may have been missed while it was down).
	Kind string
	// Lifecycle: libvirt's event and detail codes (started=2, stopped=5...);
	// Migration says what they mean for a live migration.
	Event, Detail int32
	// Block job: the disk path, job type and status codes.
	Path              string
	JobType, JobState int32
	// Tunable: the disk whose throttle changed; device events: the
	// device alias.
	Disk string
}

// domainEventIDs are the events SubscribeDomainEvents follows.
var domainEventIDs = []libvirt.DomainEventID{
	libvirt.DomainEventIDLifecycle, libvirt.DomainEventIDBlockJob, libvirt.DomainEventIDTunable,
	libvirt.DomainEventIDDeviceAdded, libvirt.DomainEventIDDeviceRemoved, libvirt.DomainEventIDMetadataChange,
}

// SubscribeDomainEvents delivers lifecycle, block-job, block-throttle,
// qtune-metadata and device events of every domain (go-libvirt ignores the domain argument
// of SubscribeEvents, so callers filter by Domain) until ctx ends, across
// reconnects. The path-based block-job event is used: BLOCK_JOB_2 is
// never delivered.
func (v *Libvirt) SubscribeDomainEvents(ctx context.Context, buf int) <-chan DomainEvent {
	out := make(chan DomainEvent, buf)
	var mu sync.Mutex
	closed := false
	send := func(ev DomainEvent) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		select {
		case out <- ev:
		default: // a slow reader loses events rather than stall libvirt
		}
	}
	start := func(l *libvirt.Libvirt) {
		for _, id := range domainEventIDs {
			ch, err := l.SubscribeEvents(ctx, id, libvirt.OptDomain{})
			if err != nil {
				v.log.Warn("subscribe to domain events failed", "event", id.String(), "error", err.Error())
				continue
			}
			go func() {
				for raw := range ch {
					if ev, ok := domainEvent(raw); ok {
						send(ev)
					}
				}
			}()
		}
	}
	v.onReconnect(func(l *libvirt.Libvirt) {
		if ctx.Err() == nil {
			start(l)
			send(DomainEvent{Kind: "reconnected"})
		}
	})
	// go-libvirt drops tunable events (see tap.go); the tapped
	// connection delivers them here. The subscription above still asks
	// libvirtd to send them.
	v.onTunable(func(domain, disk string) { send(DomainEvent{Domain: domain, Kind: "tunable", Disk: disk}) })
	if l := v.current(); l != nil {
		start(l)
	}
	go func() {
		<-ctx.Done()
		mu.Lock()
		closed = true
		close(out)
		mu.Unlock()
	}()
	return out
}

// domainEvent translates one go-libvirt event message; a tunable event
// that changes no block throttle (CPU tuning, say) is dropped.
func domainEvent(raw any) (DomainEvent, bool) {
	switch e := raw.(type) {
	case *libvirt.DomainEventCallbackLifecycleMsg:
		return DomainEvent{Domain: e.Msg.Dom.Name, Kind: "lifecycle", Event: e.Msg.Event, Detail: e.Msg.Detail}, true
	case *libvirt.DomainEventCallbackBlockJobMsg:
		return DomainEvent{Domain: e.Msg.Dom.Name, Kind: "block-job", Path: e.Msg.Path, JobType: e.Msg.Type, JobState: e.Msg.Status}, true
	case *libvirt.DomainEventCallbackTunableMsg:
		ev := DomainEvent{Domain: e.Dom.Name, Kind: "tunable"}
		block := false
		for _, p := range e.Params {
			if strings.HasPrefix(p.Field, "blkdeviotune.") {
				block = true
			}
			if p.Field == "blkdeviotune.disk" {
				ev.Disk, _ = p.Value.I.(string)
			}
		}
		if !block {
			return DomainEvent{}, false
		}
		return ev, true
	case *libvirt.DomainEventCallbackMetadataChangeMsg:
		// Other metadata (the title, another program's namespace) is
		// none of qtune's business.
		if e.Type != int32(libvirt.DomainMetadataElement) || len(e.Nsuri) == 0 || e.Nsuri[0] != OwnershipNamespace {
			return DomainEvent{}, false
		}
		return DomainEvent{Domain: e.Dom.Name, Kind: "records"}, true
	case *libvirt.DomainEventCallbackDeviceAddedMsg:
		return DomainEvent{Domain: e.Dom.Name, Kind: "device-added", Disk: e.DevAlias}, true
	case *libvirt.DomainEventCallbackDeviceRemovedMsg:
		return DomainEvent{Domain: e.Msg.Dom.Name, Kind: "device-removed", Disk: e.Msg.DevAlias}, true
	}
	return DomainEvent{}, false
}
