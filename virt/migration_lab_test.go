package virt_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/virt"
)

// eventLog keeps the events one daemon sent.
type eventLog struct {
	mu  sync.Mutex
	evs []virt.DomainEvent
}

func watchEvents(ctx context.Context, v *virt.Libvirt) *eventLog {
	l := &eventLog{}
	ch := v.SubscribeDomainEvents(ctx, 256)
	go func() {
		for ev := range ch {
			l.mu.Lock()
			l.evs = append(l.evs, ev)
			l.mu.Unlock()
		}
	}()
	return l
}

// wait waits up to d for domain's migration phase p.
func (l *eventLog) wait(domain string, p virt.MigrationPhase, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if l.count(domain, p) > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *eventLog) count(domain string, p virt.MigrationPhase) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.evs {
		if ev.Domain == domain && ev.Migration() == p {
			n++
		}
	}
	return n
}

func (l *eventLog) phases(domain string) []virt.MigrationPhase {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []virt.MigrationPhase
	for _, ev := range l.evs {
		if p := ev.Migration(); ev.Domain == domain && p != virt.MigrationNone {
			out = append(out, p)
		}
	}
	return out
}

// labHost is one libvirtd of the lab with qtune's client on it.
type labHost struct {
	name string
	d    *lab.Libvirtd
	v    *virt.Libvirt
	ev   *eventLog
}

func twoHosts(t *testing.T, ctx context.Context) (a, b *labHost) {
	t.Helper()
	began := time.Now()
	ds := lab.StartLibvirtdsT(t, 2)
	t.Logf("two libvirtds answering after %v", time.Since(began).Round(time.Millisecond))
	var hosts []*labHost
	for i, d := range ds {
		v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{Socket: d.SocketPath()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		hosts = append(hosts, &labHost{name: string(rune('A' + i)), d: d, v: v, ev: watchEvents(ctx, v)})
	}
	return hosts[0], hosts[1]
}

func ownedThrottle(seq uint64, host, rule string, persisted bool) virt.OwnedKnob {
	return virt.OwnedKnob{Disk: "vda", Kind: "throttle", Rule: rule, Seq: seq, Host: host, Persisted: persisted,
		SetAt: time.Date(2026, 12, 7, 20, 0, int(seq), 0, time.UTC), Original: json.RawMessage(`{"iops_wr":0}`), Set: json.RawMessage(`{"iops_wr":120}`)}
}

// ownedL2 and ownedCacheMode are persisted records of the other knobs,
// their values as tuning's store writes them (the L2 original keeps the
// definition's <metadata_cache>, none here).
func ownedL2(seq uint64, host string) virt.OwnedKnob {
	return virt.OwnedKnob{Disk: "vda", Kind: "l2_cache", Rule: "l2-covers-disk", Seq: seq, Host: host, Persisted: true,
		SetAt:    time.Date(2026, 12, 7, 20, 0, int(seq), 0, time.UTC),
		Original: json.RawMessage(`{"l2":{"size":1048576,"needed":8192,"defined":{"metadata_cache":""}}}`),
		Set:      json.RawMessage(`{"l2":{"size":2097152,"needed":8192}}`)}
}

func ownedCacheMode(seq uint64, host string) virt.OwnedKnob {
	return virt.OwnedKnob{Disk: "vda", Kind: "cache", Rule: "writeback-scratch", Seq: seq, Host: host, Persisted: true,
		SetAt:    time.Date(2026, 12, 7, 20, 0, int(seq), 0, time.UTC),
		Original: json.RawMessage(`{"cache":{"direct":true,"no_flush":false}}`),
		Set:      json.RawMessage(`{"cache":{"direct":false,"no_flush":false}}`)}
}

// checkHolds checks that h runs the domain with the throttle and the
// live metadata (read both ways: the metadata call and the domain XML).
func checkHolds(t *testing.T, ctx context.Context, h *labHost, dom string, throttle sample.Throttle, want virt.Ownership) {
	t.Helper()
	got, err := h.v.BlockIOTune(ctx, dom, "vda", false)
	if err != nil || got.IOPSWrite != throttle.IOPSWrite {
		t.Errorf("host %s: throttle %+v (%v), want %+v", h.name, got, err, throttle)
	}
	o, err := h.v.Ownership(ctx, dom, false)
	if err != nil || !reflect.DeepEqual(o, want) {
		t.Errorf("host %s: metadata %+v (%v), want %+v", h.name, o, err, want)
	}
	doc, err := h.v.DomainXML(ctx, dom, false)
	if err != nil {
		t.Fatal(err)
	}
	fromXML, found, err := virt.ParseDomainOwnership(dom, doc)
	if err != nil || !found || !reflect.DeepEqual(fromXML, want) {
		t.Errorf("host %s: metadata in the domain XML %+v found=%v (%v)", h.name, fromXML, found, err)
	}
}

func checkGone(t *testing.T, ctx context.Context, h *labHost, dom string) {
	t.Helper()
	if _, err := h.v.LookupDomain(ctx, dom); !errors.Is(err, virt.ErrDomainNotFound) {
		t.Errorf("host %s still knows %s: %v", h.name, dom, err)
	}
}

// watchJob polls the domain's job on h until stop is closed and reports
// the first migration job seen.
func watchJob(ctx context.Context, h *labHost, dom string, stop <-chan struct{}) <-chan virt.DomainJob {
	out := make(chan virt.DomainJob, 1)
	go func() {
		defer close(out)
		for {
			if j, err := h.v.Job(ctx, dom); err == nil && j.Migrating() {
				out <- j
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return out
}
