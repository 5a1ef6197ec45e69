package tuning

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

// Against a real libvirtd: a histogram is set and removed through QMP
// passthrough when the config allows it, and refused (nothing sent, no
// record) when it does not.
func TestHistogramThroughLibvirtPassthrough(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "h1", 0)
	v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{Socket: d.SocketPath()})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	store, err := state.OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	pidDir := filepath.Join(d.Dir, "run", "libvirt", "qemu")
	readHist := func() *qmp.LatencyHistogram {
		out, err := d.Virsh(ctx, "qemu-monitor-command", "h1", `{"execute":"query-blockstats"}`)
		if err != nil {
			t.Fatalf("query-blockstats: %v %s", err, out)
		}
		var reply struct{ Return []qmp.BlockStats }
		if err := json.Unmarshal([]byte(out), &reply); err != nil || len(reply.Return) == 0 {
			t.Fatalf("query-blockstats reply %s: %v", out, err)
		}
		return reply.Return[0].Stats.RdLatencyHist
	}
	on := policy.Decision{Rule: "tail", VM: "h1", Disk: "vda", Knob: policy.KnobHistogram, Mode: policy.ModeEnforce,
		Action: policy.Action{Other: &policy.HistogramSpec{Boundaries: []uint64{1e6, 5e6}}}}
	target := state.Target{VM: "h1", Disk: "vda"}

	refusing := NewExecutor(NewLibvirtBackend(v, LibvirtBackendOptions{PidDir: pidDir}), store, Options{})
	var r *Refusal
	if _, err := refusing.Execute(ctx, on); !errors.As(err, &r) || r.Code != "passthrough" {
		t.Fatalf("without passthrough: %v, want a passthrough refusal", err)
	}
	if o, _ := store.Owned(target, policy.KnobHistogram); o != nil || readHist() != nil {
		t.Fatalf("without passthrough: record %+v, histogram %+v", o, readHist())
	}

	e := NewExecutor(NewLibvirtBackend(v, LibvirtBackendOptions{AllowPassthrough: true, PidDir: pidDir}), store, Options{})
	if out, err := e.Execute(ctx, on); err != nil || out.Result != state.ResultApplied {
		t.Fatalf("on: %+v %v", out, err)
	}
	if h := readHist(); h == nil || len(h.Boundaries) != 2 || h.Boundaries[1] != 5e6 {
		t.Fatalf("histogram after on: %+v", h)
	}
	off := on
	off.Revert, off.Action = true, policy.Action{}
	if out, err := e.Execute(ctx, off); err != nil || out.Result != state.ResultReverted {
		t.Fatalf("off: %+v %v", out, err)
	}
	if h := readHist(); h != nil {
		t.Fatalf("histogram after off: %+v", h)
	}
	if o, _ := store.Owned(target, policy.KnobHistogram); o != nil {
		t.Fatalf("record after off: %+v", o)
	}
}
