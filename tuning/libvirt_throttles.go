package tuning

import (
	"context"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// throttleCache holds each disk's throttle as the domain XML last said,
// kept current by the sampler (which reads the XML when a domain is
// first seen, on libvirt's tunable and device events, and every few
// minutes). Reading an owned throttle every cycle is then no call to
// libvirt at all. Every change of a domain's throttles (qtune's own
// apply, a tunable event) bumps the domain's generation first; a note
// made from an XML read that started before that is dropped, so a slow
// read never brings back a value that was already replaced.
type throttleCache struct {
	gen  map[string]uint64                     // by domain
	byVM map[string]map[string]sample.Throttle // domain → disk → throttle
}

// ThrottleGeneration is what NoteThrottles must be given: read it before
// reading the domain's XML.
func (b *LibvirtBackend) ThrottleGeneration(domain string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.throttles.gen[domain]
}

// NoteThrottles records a domain's throttles as read from its XML, unless
// they changed since gen (from ThrottleGeneration before the read).
func (b *LibvirtBackend) NoteThrottles(domain string, gen uint64, byDisk map[string]sample.Throttle) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.throttles.gen[domain] != gen {
		return
	}
	if b.throttles.byVM == nil {
		b.throttles.byVM = map[string]map[string]sample.Throttle{}
	}
	b.throttles.byVM[domain] = byDisk
}

// ThrottlesChanged drops what is known of a domain's throttles: libvirt
// said one changed, so the next read asks libvirt until the sampler has
// read the XML again.
func (b *LibvirtBackend) ThrottlesChanged(domain string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.throttlesChangedLocked(domain)
}

func (b *LibvirtBackend) throttlesChangedLocked(domain string) {
	if b.throttles.gen == nil {
		b.throttles.gen = map[string]uint64{}
	}
	b.throttles.gen[domain]++
	delete(b.throttles.byVM, domain)
}

func (b *LibvirtBackend) cachedThrottle(t state.Target) (sample.Throttle, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	th, ok := b.throttles.byVM[t.VM][t.Disk]
	return th, ok
}

// readThrottle answers from the XML's view when it is current, and asks
// libvirt otherwise.
func (b *LibvirtBackend) readThrottle(ctx context.Context, t state.Target) (state.KnobState, error) {
	if th, ok := b.cachedThrottle(t); ok {
		return state.OfThrottle(th), nil
	}
	th, err := b.v.BlockIOTune(ctx, t.VM, t.Disk, false)
	if err != nil {
		return state.KnobState{}, err
	}
	th.Group = virt.OwnGroup(th.Group)
	return state.OfThrottle(th), nil
}
