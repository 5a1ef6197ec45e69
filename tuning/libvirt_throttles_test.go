package tuning

import (
	"context"
	"testing"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// The backend has no libvirt connection here: a read that asked libvirt
// would panic, so every read below is proven to come from the XML's view.
func TestThrottleReadsComeFromTheXMLView(t *testing.T) {
	b := NewLibvirtBackend(nil, LibvirtBackendOptions{})
	tgt := state.Target{VM: "t1", Disk: "vda"}
	gen := b.ThrottleGeneration("t1")
	b.NoteThrottles("t1", gen, map[string]sample.Throttle{"vda": {IOPSWrite: 150}})
	got, err := b.Read(context.Background(), tgt, policy.KnobThrottle)
	if err != nil || got.Throttle() == nil || got.Throttle().IOPSWrite != 150 {
		t.Fatalf("read %+v %v", got, err)
	}

	// An XML read that began before a tunable event must not bring the
	// old value back.
	gen = b.ThrottleGeneration("t1")
	b.ThrottlesChanged("t1")
	b.NoteThrottles("t1", gen, map[string]sample.Throttle{"vda": {IOPSWrite: 150}})
	if _, ok := b.cachedThrottle(tgt); ok {
		t.Error("a read from before the event was kept")
	}
	b.NoteThrottles("t1", b.ThrottleGeneration("t1"), map[string]sample.Throttle{"vda": {IOPSWrite: 300}})
	if th, ok := b.cachedThrottle(tgt); !ok || th.IOPSWrite != 300 {
		t.Errorf("after the re-read: %+v %v", th, ok)
	}
	// A domain that stops forgets its view.
	b.Forget("t1")
	if _, ok := b.cachedThrottle(tgt); ok {
		t.Error("view kept across a lifecycle event")
	}
}
