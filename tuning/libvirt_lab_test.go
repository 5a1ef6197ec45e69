package tuning

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/virt"
)

func TestRealLibvirtTuning(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "t1", 0)
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

	writeIOPS := func(dur time.Duration) float64 {
		read := func() sample.Disk {
			s, err := v.BlockStats(ctx, "t1")
			if err != nil || len(s["t1"]) != 1 {
				t.Fatalf("stats %v %v", s, err)
			}
			return s["t1"][0]
		}
		a := read()
		time.Sleep(dur)
		r, err := sample.Derive(a, read())
		if err != nil {
			t.Fatal(err)
		}
		return r.WriteIOPS
	}

	t.Run("passthrough refused unless allowed", func(t *testing.T) {
		e := NewExecutor(NewLibvirtBackend(v, LibvirtBackendOptions{PidDir: pidDir}), store, Options{})
		_, err := e.Execute(ctx, policy.Decision{Rule: "c", VM: "t1", Disk: "vda", Knob: policy.KnobCache,
			Action: policy.Action{Cache: &policy.CacheSpec{Direct: false}}})
		var r *Refusal
		if !errors.As(err, &r) || r.Code != "passthrough" {
			t.Fatalf("err = %v", err)
		}
	})

	b := NewLibvirtBackend(v, LibvirtBackendOptions{AllowPassthrough: true, PidDir: pidDir})
	e := NewExecutor(b, store, Options{})

	t.Run("throttle through the native API, persisted", func(t *testing.T) {
		free := writeIOPS(2 * time.Second)
		const limit = 150
		dec := policy.Decision{Rule: "calm", VM: "t1", Disk: "vda", Knob: policy.KnobThrottle, Persist: true,
			Action: policy.Action{Throttle: &sample.Throttle{IOPSWrite: limit}}}
		if out, err := e.Execute(ctx, dec); err != nil || out.Result != state.ResultApplied {
			t.Fatalf("%+v %v", out, err)
		}
		time.Sleep(time.Second)
		held := writeIOPS(3 * time.Second)
		t.Logf("unthrottled %.0f, throttled at %d: %.0f", free, limit, held)
		if held < limit*0.9 || held > limit*1.1 {
			t.Errorf("throttled %.0f, want %d ±10%%", held, limit)
		}
		inactive, _ := d.Virsh(ctx, "dumpxml", "--inactive", "t1")
		if !strings.Contains(inactive, "<write_iops_sec>150</write_iops_sec>") {
			t.Errorf("persist: <iotune> not in the inactive XML:\n%s", inactive)
		}
		dec.Revert, dec.Action = true, policy.Action{}
		if out, err := e.Execute(ctx, dec); err != nil || out.Result != state.ResultReverted {
			t.Fatalf("revert %+v %v", out, err)
		}
		if back := writeIOPS(2 * time.Second); back < free*0.5 {
			t.Errorf("after revert %.0f, unthrottled %.0f", back, free)
		}
		if len(b.Tainted()) != 0 {
			t.Errorf("the native throttle path tainted %v", b.Tainted())
		}
	})

	t.Run("L2 cache by passthrough reopen, persisted, taint reported", func(t *testing.T) {
		dec := policy.Decision{Rule: "l2", VM: "t1", Disk: "vda", Knob: policy.KnobL2Cache, Persist: true,
			Action: policy.Action{L2Cache: &policy.L2Spec{Size: 2 << 20}}}
		out, err := e.Execute(ctx, dec)
		if err != nil || out.Result != state.ResultApplied || out.After.L2().Size != 2<<20 {
			t.Fatalf("%+v %v", out, err)
		}
		if got := b.Tainted(); len(got) != 1 || got[0] != "t1" {
			t.Errorf("tainted %v", got)
		}
		logb, _ := os.ReadFile(filepath.Join(d.Dir, "log", "qemu", "t1.log"))
		if !strings.Contains(string(logb), "custom-monitor") {
			t.Errorf("libvirt did not record the taint in the domain log:\n%s", logb)
		}
		inactive, _ := d.Virsh(ctx, "dumpxml", "--inactive", "t1")
		if !strings.Contains(inactive, "<max_size unit='bytes'>2097152</max_size>") && !strings.Contains(inactive, ">2048</max_size>") {
			t.Errorf("persist: metadata_cache not in the inactive XML:\n%s", inactive)
		}
		if st, _ := d.Virsh(ctx, "domstate", "t1"); !strings.Contains(st, "running") {
			t.Errorf("domain state after reopen: %s", st)
		}

		// The revert puts the definition back as it was (it had no
		// metadata_cache), so that the next QEMU gets no cache-size cap
		// and a later, larger L2 change is accepted.
		rev := dec
		rev.Revert, rev.Action = true, policy.Action{}
		if out, err := e.Execute(ctx, rev); err != nil || out.Result != state.ResultReverted {
			t.Fatalf("revert %+v %v", out, err)
		}
		inactive, _ = d.Virsh(ctx, "dumpxml", "--inactive", "t1")
		if strings.Contains(inactive, "metadata_cache") {
			t.Errorf("revert left metadata_cache in the inactive XML:\n%s", inactive)
		}
		if out, err := d.Virsh(ctx, "destroy", "t1"); err != nil {
			t.Fatalf("destroy: %v %s", err, out)
		}
		if out, err := d.Virsh(ctx, "start", "t1"); err != nil {
			t.Fatalf("start: %v %s", err, out)
		}
		b.Forget("t1")
		dec.Action.L2Cache.Size = 4 << 20
		out, err = e.Execute(ctx, dec)
		if err != nil || out.Result != state.ResultApplied || out.After.L2().Size != 4<<20 {
			t.Fatalf("L2 change after the restart: %+v %v", out, err)
		}
		t.Logf("after revert and restart: %s applied", out.After)
	})
}
