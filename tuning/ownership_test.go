package tuning

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// carrying is a backend whose VMs carry their records (as libvirt's
// domain metadata does).
type carrying struct {
	*fakeBackend
	carried  map[string][]state.Owned
	persist  map[string]bool
	failNext error
	// appliedWhenWritten: what the knob held when the records were written.
	appliedWhenWritten []int
}

func (c *carrying) WriteRecords(_ context.Context, vm string, owned []state.Owned, persist bool) error {
	if c.failNext != nil {
		err := c.failNext
		c.failNext = nil
		return err
	}
	c.carried[vm], c.persist[vm] = owned, persist
	c.appliedWhenWritten = append(c.appliedWhenWritten, c.applies)
	return nil
}

func carryingRig(t *testing.T) (*rig, *carrying) {
	r := newRig(t, Options{Host: "hv-a"})
	c := &carrying{fakeBackend: r.b, carried: map[string][]state.Owned{}, persist: map[string]bool{}}
	r.e.backend = c
	return r, c
}

func TestRecordsTravelWithTheVM(t *testing.T) {
	r, c := carryingRig(t)
	ctx := context.Background()
	if _, err := r.e.Execute(ctx, throttle(300)); err != nil {
		t.Fatal(err)
	}
	got := c.carried["vm1"]
	if len(got) != 1 || got[0].Rule != "calm" || got[0].Host != "hv-a" || got[0].Seq != 1 ||
		got[0].Applied.Throttle().IOPSWrite != 300 || got[0].Original.Throttle().Active() {
		t.Fatalf("carried %+v", got)
	}
	if c.appliedWhenWritten[0] != 0 {
		t.Fatalf("the record was written after the change (%d applies before it)", c.appliedWhenWritten[0])
	}
	k, err := OwnedKnobOf(got[0])
	if err != nil {
		t.Fatal(err)
	}
	back, err := OwnedFromKnob("vm1", k)
	if err != nil || !back.Original.Equal(got[0].Original) || !back.Applied.Equal(got[0].Applied) || back.Rule != "calm" || back.Seq != 1 {
		t.Fatalf("round trip %+v %v", back, err)
	}
	d := throttle(300)
	d.Disk = "vdb"
	if _, err := r.e.Execute(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got := c.carried["vm1"]; len(got) != 2 || got[1].Disk != "vdb" || got[1].Seq != 2 {
		t.Fatalf("carried after a second change %+v", got)
	}
	if _, err := r.e.Execute(ctx, revertOf(throttle(300))); err != nil {
		t.Fatal(err)
	}
	if got := c.carried["vm1"]; len(got) != 1 || got[0].Disk != "vdb" {
		t.Fatalf("carried after the release of vda %+v", got)
	}
}

func TestRecordNotWrittenRefusesTheChange(t *testing.T) {
	r, c := carryingRig(t)
	c.failNext = errors.New("metadata refused")
	out, err := r.e.Execute(context.Background(), throttle(300))
	refusal(t, err, RefuseRecord)
	if out.Result != state.ResultRefused || r.b.applies != 0 {
		t.Fatalf("%+v, %d applies", out, r.b.applies)
	}
	if o, _ := r.s.Owned(vda, policy.KnobThrottle); o != nil {
		t.Fatalf("owned after a refusal: %+v", o)
	}
}

func TestImportAndLetGo(t *testing.T) {
	r, _ := carryingRig(t)
	o := state.Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Phase: state.PhaseApplied, Host: "hv-b", Seq: 4,
		Original: state.OfThrottle(sample.Throttle{}), Applied: state.OfThrottle(sample.Throttle{IOPSWrite: 256})}
	if ok, err := r.e.Import(o); !ok || err != nil {
		t.Fatalf("import: %v %v", ok, err)
	}
	o.Original = state.OfThrottle(sample.Throttle{IOPSWrite: 999})
	if ok, err := r.e.Import(o); ok || err != nil {
		t.Fatalf("a second import replaced the record held: %v %v", ok, err)
	}
	got, _ := r.s.Owned(vda, policy.KnobThrottle)
	if got == nil || got.Original.Throttle().Active() || got.Host != "hv-b" {
		t.Fatalf("held %+v", got)
	}
	// The knob came with the VM as the other host set it; the rule
	// still firing here keeps it: no change, the original kept.
	r.b.state[key(vda, policy.KnobThrottle)] = o.Applied
	out, err := r.e.Execute(context.Background(), throttle(256))
	if err != nil || out.Result != state.ResultNoOp || r.b.applies != 0 {
		t.Fatalf("a held knob was set again: %+v %v", out, err)
	}
	if g, _ := r.s.Owned(vda, policy.KnobThrottle); g == nil || g.Original.Throttle().Active() {
		t.Fatalf("original lost: %+v", g)
	}
	if n, err := r.e.LetGo("vm1", "migrated"); n != 1 || err != nil {
		t.Fatalf("let go: %d %v", n, err)
	}
	if all, _ := r.s.AllOwned(); len(all) != 0 {
		t.Fatalf("records left %+v", all)
	}
}

func TestCompareRecords(t *testing.T) {
	held := state.Owned{Target: vda, Knob: policy.KnobThrottle, Rule: "calm", Phase: state.PhaseApplied,
		Original: state.OfThrottle(sample.Throttle{}), Applied: state.OfThrottle(sample.Throttle{IOPSWrite: 256})}
	k, err := OwnedKnobOf(held)
	if err != nil {
		t.Fatal(err)
	}
	if d := CompareRecords("vm1", []state.Owned{held}, virt.Ownership{Knobs: []virt.OwnedKnob{k}}); d != nil {
		t.Fatalf("the same record disagrees: %v", d)
	}
	other := held
	other.Original = state.OfThrottle(sample.Throttle{IOPSWrite: 900})
	ko, _ := OwnedKnobOf(other)
	if d := CompareRecords("vm1", []state.Owned{held}, virt.Ownership{Knobs: []virt.OwnedKnob{ko}}); len(d) != 1 || !strings.Contains(d[0], "original") {
		t.Fatalf("another original: %v", d)
	}
	if d := CompareRecords("vm1", []state.Owned{held}, virt.Ownership{}); len(d) != 1 || !strings.Contains(d[0], "does not carry") {
		t.Fatalf("a record the domain lacks: %v", d)
	}
	if d := CompareRecords("vm1", nil, virt.Ownership{Knobs: []virt.OwnedKnob{k}}); len(d) != 1 || !strings.Contains(d[0], "does not hold") {
		t.Fatalf("a record the store lacks: %v", d)
	}
}
