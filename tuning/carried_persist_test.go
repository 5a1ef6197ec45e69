package tuning

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// hostWithDefs is one libvirt host as the executor sees it: fakeBackend's
// live knobs, the persistent definition handled by LibvirtBackend's own
// code over fakeDefs, and qtune's records in the domain's metadata
// (live, and in the definition when persisted) encoded as
// LibvirtBackend.WriteRecords encodes them.
type hostWithDefs struct {
	live       *fakeBackend
	lb         *LibvirtBackend
	defs       *fakeDefs
	meta, conf string // the metadata element, live and persistent
}

func (h *hostWithDefs) Read(ctx context.Context, t state.Target, k policy.Knob) (state.KnobState, error) {
	s, err := h.live.Read(ctx, t, k)
	kind, kerr := knobKindOf(k)
	if err != nil || kerr != nil || kind.Defined == nil {
		return s, err
	}
	return h.lb.defined(ctx, t, s, kind.Defined)
}

func (h *hostWithDefs) Apply(ctx context.Context, t state.Target, k policy.Knob, s state.KnobState, persist bool) error {
	if err := h.live.Apply(ctx, t, k, s, persist); err != nil || !persist {
		return err
	}
	kind, err := knobKindOf(k)
	if err != nil {
		return err
	}
	return h.lb.persist(ctx, t, s, kind.Persist)
}

func (h *hostWithDefs) WriteRecords(_ context.Context, vm string, owned []state.Owned, persist bool) error {
	live, defined, err := splitRecords(owned)
	if err != nil {
		return err
	}
	encode := func(knobs []virt.OwnedKnob) string {
		o := virt.Ownership{Knobs: knobs}
		if o.Empty() {
			return ""
		}
		doc, err := o.Encode()
		if err != nil {
			panic(err)
		}
		return doc
	}
	h.meta = encode(live)
	if persist {
		h.conf = encode(defined)
	}
	return nil
}

func newHostWithDefs(t *testing.T, host, doc string) (*Executor, *hostWithDefs, *rig) {
	r := newRig(t, Options{})
	h := &hostWithDefs{live: r.b, defs: &fakeDefs{doc: doc},
		lb: NewLibvirtBackend(nil, LibvirtBackendOptions{Log: hclog.NewNullLogger()})}
	h.lb.defs = h.defs
	return NewExecutor(h, r.s, Options{Clock: r.clk, Host: host}), h, r
}

// carriedScene: a domain's persisted L2 cache size and cache mode, set
// on host A beside a live throttle, travel to host B in the domain's
// metadata (all three live; the persisted two in the definition, which a
// --persistent migration carries too). The new QEMU on B starts from the
// live XML, which a change by passthrough never reached: its cache mode
// is A's original again. B adopts the records with A's originals.
type carriedScene struct {
	decisions []policy.Decision
	before    string // A's definition before its changes
	b         *Executor
	hostB     *hostWithDefs
	rigB      *rig
	carried   virt.Ownership
}

func migratedWithRecords(t *testing.T) *carriedScene {
	t.Helper()
	ctx := context.Background()
	sc := &carriedScene{before: strings.Replace(l2Dom, "%DRIVER%", `<driver name='qemu' type='qcow2' cache='none'/>`, 1),
		decisions: []policy.Decision{l2Persisted(64 << 20), {Rule: "cache", VM: "vm1", Disk: "vda", Knob: policy.KnobCache,
			Mode: policy.ModeEnforce, Persist: true, Cooldown: time.Minute, Action: policy.Action{Cache: &policy.CacheSpec{}}},
			throttle(300)}}
	a, hostA, rigA := newHostWithDefs(t, "hv-a", sc.before)
	rigA.b.state[key(vda, policy.KnobCache)] = state.OfCache(state.CacheState{Direct: true})
	for _, d := range sc.decisions {
		if out, err := a.Execute(ctx, d); err != nil || out.Result != state.ResultApplied {
			t.Fatalf("A: %s: %+v %v", d.Knob, out, err)
		}
	}
	for _, want := range []string{"cache='writeback'", "<max_size unit='bytes'>67108864</max_size>"} {
		if !strings.Contains(hostA.defs.doc, want) {
			t.Fatalf("A's definition lacks %s:\n%s", want, hostA.defs.doc)
		}
	}
	if strings.Count(hostA.meta, "<knob") != 3 || strings.Count(hostA.conf, "<knob") != 2 || strings.Contains(hostA.conf, "throttle") {
		t.Fatalf("A's records: live %q, definition %q; want three live, the two persisted in the definition", hostA.meta, hostA.conf)
	}

	// The migration: B's libvirt has A's definition and metadata, the
	// throttle A set, and the L2 cache size and cache mode of the XML.
	sc.b, sc.hostB, sc.rigB = newHostWithDefs(t, "hv-b", hostA.defs.doc)
	sc.hostB.meta, sc.hostB.conf = hostA.meta, hostA.conf
	sc.rigB.b.state[key(vda, policy.KnobThrottle)] = rigA.b.state[key(vda, policy.KnobThrottle)]
	sc.rigB.b.state[key(vda, policy.KnobCache)] = state.OfCache(state.CacheState{Direct: true})
	var err error
	sc.carried, err = virt.DecodeOwnership("vm1", sc.hostB.meta)
	if err != nil || len(sc.carried.Knobs) != 3 {
		t.Fatalf("carried %+v %v", sc.carried, err)
	}
	for _, k := range sc.carried.Knobs {
		if k.Persisted != (k.Kind != "throttle") || k.Host != "hv-a" {
			t.Errorf("%s travels as persisted=%v set on %q", k.Kind, k.Persisted, k.Host)
		}
		o, err := OwnedFromKnob("vm1", k)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := sc.b.Import(o); !ok || err != nil {
			t.Fatalf("B: import %s: %v %v", k.Kind, ok, err)
		}
		if out, err := sc.b.Reconcile(ctx, o); err != nil || out.Result != state.ResultNoOp {
			t.Errorf("B: reconcile %s: %+v %v", k.Kind, out, err)
		}
	}
	if got := CompareRecords("vm1", mustAllOwned(t, sc.rigB.s), sc.carried); len(got) != 0 {
		t.Errorf("B's store and the metadata disagree: %q", got)
	}
	return sc
}

// With the rules gone from B's policy, B restores A's originals, live
// and in the definition, which ends as it was before A changed it, also
// for the cache mode already at its original live; the records leave
// the metadata, live and persistent.
func TestPersistedL2AndCacheRestoredOnTheDestination(t *testing.T) {
	ctx := context.Background()
	sc := migratedWithRecords(t)
	sc.rigB.clk.Advance(2 * time.Minute)
	for _, d := range sc.decisions {
		if out, err := sc.b.Execute(ctx, revertOf(d)); err != nil || out.Result != state.ResultReverted {
			t.Fatalf("B: restore %s: %+v %v", d.Knob, out, err)
		}
	}
	if sc.hostB.defs.doc != sc.before {
		t.Errorf("B's definition after the restores:\n%s\nwant it as before A's changes:\n%s", sc.hostB.defs.doc, sc.before)
	}
	if c := sc.rigB.b.state[key(vda, policy.KnobCache)].Cache(); c == nil || !c.Direct {
		t.Errorf("B's live cache mode %+v, want A's original (direct)", c)
	}
	if l2 := sc.rigB.b.state[key(vda, policy.KnobL2Cache)].L2(); l2 == nil || l2.Size != 1<<20 {
		t.Errorf("B's live L2 cache %+v, want A's original 1 MiB", l2)
	}
	if sc.hostB.meta != "" || sc.hostB.conf != "" {
		t.Errorf("B's metadata after the restores: live %q, definition %q", sc.hostB.meta, sc.hostB.conf)
	}
}

// With the rules still in force on B, the throttle (live, carried) is
// held as it is; the cache mode, back at its original live, is set again
// with A's original kept in the record.
func TestPersistedCacheSetAgainOnTheDestination(t *testing.T) {
	ctx := context.Background()
	sc := migratedWithRecords(t)
	applies := sc.rigB.b.applies
	if out, err := sc.b.Execute(ctx, throttle(300)); err != nil || out.Result != state.ResultNoOp || sc.rigB.b.applies != applies {
		t.Errorf("B: the throttle rule still firing: %+v %v (%d applies)", out, err, sc.rigB.b.applies-applies)
	}
	sc.rigB.clk.Advance(2 * time.Minute)
	if out, err := sc.b.Execute(ctx, sc.decisions[1]); err != nil || out.Result != state.ResultApplied {
		t.Fatalf("B: the cache rule still firing: %+v %v", out, err)
	}
	o, _ := sc.rigB.s.Owned(vda, policy.KnobCache)
	if o == nil || o.Original.Cache() == nil || !o.Original.Cache().Direct || o.Applied.Cache().Direct {
		t.Errorf("B's cache record %+v, want A's original (direct) and writeback set", o)
	}
	if c := sc.rigB.b.state[key(vda, policy.KnobCache)].Cache(); c == nil || c.Direct {
		t.Errorf("B's live cache mode %+v, want writeback", c)
	}
	if !strings.Contains(sc.hostB.defs.doc, "cache='writeback'") || strings.Count(sc.hostB.conf, "<knob") != 2 {
		t.Errorf("B's definition %s\nits records %s", sc.hostB.defs.doc, sc.hostB.conf)
	}
}

func mustAllOwned(t *testing.T, s *state.Store) []state.Owned {
	t.Helper()
	all, err := s.AllOwned()
	if err != nil {
		t.Fatal(err)
	}
	return all
}
