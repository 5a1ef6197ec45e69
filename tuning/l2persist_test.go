package tuning

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
)

// fakeDefs is libvirt's store of one persistent domain definition.
type fakeDefs struct{ doc string }

func (f *fakeDefs) DomainXML(context.Context, string, bool) (string, error) { return f.doc, nil }
func (f *fakeDefs) DefineXML(_ context.Context, doc string) error           { f.doc = doc; return nil }

// l2DefBackend is the live L2 cache of fakeBackend with the persistent
// definition handled by LibvirtBackend's own code over fakeDefs.
type l2DefBackend struct {
	live *fakeBackend
	lb   *LibvirtBackend
}

func (b *l2DefBackend) Read(ctx context.Context, t state.Target, k policy.Knob) (state.KnobState, error) {
	s, err := b.live.Read(ctx, t, k)
	if err != nil {
		return s, err
	}
	return b.lb.defined(ctx, t, s, definedL2)
}

func (b *l2DefBackend) Apply(ctx context.Context, t state.Target, k policy.Knob, s state.KnobState, persist bool) error {
	if err := b.live.Apply(ctx, t, k, s, persist); err != nil || !persist {
		return err
	}
	return b.lb.persist(ctx, t, s, persistL2)
}

const l2Dom = `<domain type='qemu'>
  <name>vm1</name>
  <devices>
    <disk type='file' device='disk'>
      %DRIVER%
      <source file='/img/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'>
        <metadata_cache>
          <max_size unit='bytes'>65536</max_size>
        </metadata_cache>
      </driver>
      <source file='/img/b.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>`

func newL2DefRig(t *testing.T, driver string) (*rig, *fakeDefs, *bytes.Buffer) {
	r := newRig(t, Options{})
	defs := &fakeDefs{doc: strings.Replace(l2Dom, "%DRIVER%", driver, 1)}
	logs := &bytes.Buffer{}
	lb := NewLibvirtBackend(nil, LibvirtBackendOptions{Log: hclog.New(&hclog.LoggerOptions{Output: logs})})
	lb.defs = defs
	r.e = NewExecutor(&l2DefBackend{live: r.b, lb: lb}, r.s, Options{Clock: r.clk})
	return r, defs, logs
}

func l2Persisted(size uint64) policy.Decision {
	return policy.Decision{Rule: "l2", VM: "vm1", Disk: "vda", Knob: policy.KnobL2Cache, Mode: policy.ModeEnforce,
		Persist: true, Cooldown: time.Minute, Action: policy.Action{L2Cache: &policy.L2Spec{Size: size}}}
}

func TestL2PersistRevertRestoresDefinition(t *testing.T) {
	ctx := context.Background()
	for name, driver := range map[string]string{
		"no metadata_cache":    `<driver name='qemu' type='qcow2' cache='none' discard='unmap'/>`,
		"its own max_size":     "<driver name='qemu' type='qcow2'>\n        <metadata_cache>\n          <max_size unit='bytes'>268435456</max_size>\n        </metadata_cache>\n      </driver>",
		"max_size in KiB":      `<driver name='qemu' type='qcow2'><metadata_cache><max_size unit='KiB'>262144</max_size></metadata_cache></driver>`,
		"empty metadata_cache": `<driver name='qemu' type='qcow2' io='threads'><metadata_cache/></driver>`,
	} {
		t.Run(name, func(t *testing.T) {
			r, defs, _ := newL2DefRig(t, driver)
			before := defs.doc
			dec := l2Persisted(64 << 20)
			if out, err := r.e.Execute(ctx, dec); err != nil || out.Result != state.ResultApplied {
				t.Fatalf("apply: %+v %v", out, err)
			}
			if !strings.Contains(defs.doc, "<max_size unit='bytes'>67108864</max_size>") {
				t.Fatalf("the change is not in the definition:\n%s", defs.doc)
			}
			o, _ := r.s.Owned(vda, policy.KnobL2Cache)
			if o == nil || o.Original.L2().Defined == nil {
				t.Fatalf("the record keeps no original definition: %+v", o)
			}
			r.clk.Advance(2 * time.Minute)
			dec.Revert = true
			if out, err := r.e.Execute(ctx, dec); err != nil || out.Result != state.ResultReverted {
				t.Fatalf("revert: %+v %v", out, err)
			}
			if defs.doc != before {
				t.Errorf("definition after the revert:\n%s\nwant, as before the change:\n%s", defs.doc, before)
			}
		})
	}
}

// A record written before qtune kept the definition's own element: its
// revert must not write the original effective size as a cap.
func TestL2PersistRevertOfOldRecordRemovesCap(t *testing.T) {
	ctx := context.Background()
	r, defs, logs := newL2DefRig(t, `<driver name='qemu' type='qcow2'><metadata_cache><max_size unit='bytes'>67108864</max_size></metadata_cache></driver>`)
	r.b.state[key(vda, policy.KnobL2Cache)] = state.OfL2(state.L2State{Size: 64 << 20, Needed: 128 << 20})
	now := r.clk.Now()
	if err := r.s.PutOwned(&state.Owned{Target: vda, Knob: policy.KnobL2Cache, Rule: "l2", Phase: state.PhaseApplied, Persist: true,
		Original: state.OfL2(state.L2State{Size: 8192}), Applied: state.OfL2(state.L2State{Size: 64 << 20}),
		Since: now, LastChange: now}); err != nil {
		t.Fatal(err)
	}
	dec := l2Persisted(64 << 20)
	dec.Revert = true
	if out, err := r.e.Execute(ctx, dec); err != nil || out.Result != state.ResultReverted || out.After.L2().Size != 8192 {
		t.Fatalf("revert: %+v %v", out, err)
	}
	if !strings.Contains(defs.doc, "<driver name='qemu' type='qcow2'/>") || strings.Contains(defs.doc, "8192") {
		t.Errorf("the cap qtune wrote is not removed:\n%s", defs.doc)
	}
	if !strings.Contains(defs.doc, "<max_size unit='bytes'>65536</max_size>") {
		t.Errorf("another disk's metadata_cache was touched:\n%s", defs.doc)
	}
	if !strings.Contains(logs.String(), "was not recorded") {
		t.Errorf("the removal is not logged: %q", logs.String())
	}
}

// A node whose cache-size is below the wanted L2 cache is refused before
// anything is written, with what to do.
func TestL2AboveCacheSizeRefused(t *testing.T) {
	r := newRig(t, Options{})
	r.b.state[key(vda, policy.KnobL2Cache)] = state.OfL2(state.L2State{Size: 8192, Needed: 128 << 20, Limit: 8192})
	out, err := r.e.Execute(context.Background(), l2Persisted(64<<20))
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Code != "bounds" || out.Result != state.ResultRefused {
		t.Fatalf("%+v %v", out, err)
	}
	for _, w := range []string{"cache-size is 8192", "metadata_cache", "raise max_size to 67108864", "max of 8192"} {
		if !strings.Contains(ref.Reason, w) {
			t.Errorf("reason %q does not say %q", ref.Reason, w)
		}
	}
	if r.b.applies != 0 {
		t.Errorf("%d applies", r.b.applies)
	}
	if o, _ := r.s.Owned(vda, policy.KnobL2Cache); o != nil {
		t.Errorf("a refused change left a record: %+v", o)
	}
}
