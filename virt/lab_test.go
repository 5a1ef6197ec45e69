package virt_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/virt"
)

func libvirtWriteRate(t *testing.T, v *virt.Libvirt, dom string, d time.Duration) float64 {
	t.Helper()
	ctx := context.Background()
	read := func() sample.Disk {
		s, err := v.BlockStats(ctx, dom)
		if err != nil {
			t.Fatal(err)
		}
		if len(s[dom]) != 1 {
			t.Fatalf("stats of %s: %+v", dom, s)
		}
		return s[dom][0]
	}
	first := read()
	time.Sleep(d)
	r, err := sample.Derive(first, read())
	if err != nil {
		t.Fatal(err)
	}
	return r.WriteIOPS
}

// One libvirtd for the whole flow: stats, throttle, passthrough, restart.
func TestRealLibvirt(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "t1", 0)
	v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{Socket: d.SocketPath(), MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	doms, err := v.Domains(ctx)
	if err != nil || len(doms) != 1 || doms[0].Name != "t1" || doms[0].UUID == "" {
		t.Fatalf("domains %+v, %v", doms, err)
	}
	if _, err := v.LookupDomain(ctx, "no-such-domain"); !errors.Is(err, virt.ErrDomainNotFound) {
		t.Errorf("unknown domain: %v", err)
	}

	t.Run("bulk stats and throttle", func(t *testing.T) {
		free := libvirtWriteRate(t, v, "t1", 2*time.Second)
		t.Logf("unthrottled: %.0f write IOPS", free)
		const limit = 120
		if free < 3*limit {
			t.Fatalf("guest too slow (%.0f IOPS)", free)
		}
		if err := v.SetBlockIOTune(ctx, "t1", "vda", sample.Throttle{IOPSWrite: limit, Group: "qtune-test"}, false); err != nil {
			t.Fatal(err)
		}
		got, err := v.BlockIOTune(ctx, "t1", "vda", false)
		if err != nil || got.IOPSWrite != limit || got.Group != "qtune-test" {
			t.Fatalf("read back %+v, %v", got, err)
		}
		time.Sleep(time.Second)
		held := libvirtWriteRate(t, v, "t1", 3*time.Second)
		t.Logf("throttled at %d: %.0f write IOPS", limit, held)
		if held < limit*0.9 || held > limit*1.1 {
			t.Errorf("throttled rate %.0f, want %d ±10%%", held, limit)
		}
		if err := v.SetBlockIOTune(ctx, "t1", "vda", sample.Throttle{}, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		if back := libvirtWriteRate(t, v, "t1", 2*time.Second); back < free*0.5 {
			t.Errorf("after clearing: %.0f IOPS, unthrottled was %.0f", back, free)
		}
	})

	t.Run("per-disk stats", func(t *testing.T) {
		// The guest keeps writing: the per-disk call's count falls
		// between two bulk reads around it.
		bulk := func() uint64 {
			s, err := v.BlockStats(ctx, "t1")
			if err != nil || len(s["t1"]) != 1 {
				t.Fatalf("bulk stats: %+v, %v", s, err)
			}
			return s["t1"][0].WriteOps
		}
		before := bulk()
		disks, err := v.DiskStats(ctx, "t1", []string{"vda"})
		after := bulk()
		if err != nil || len(disks) != 1 || disks[0].Name != "vda" {
			t.Fatalf("per-disk stats: %+v, %v", disks, err)
		}
		if w := disks[0].WriteOps; w == 0 || w < before || w > after {
			t.Errorf("per-disk write ops %d, bulk %d before and %d after", w, before, after)
		}
		if _, err := v.DiskStats(ctx, "t1", []string{"vdz"}); err == nil {
			t.Error("no error for a disk the domain does not have")
		}
	})

	t.Run("passthrough", func(t *testing.T) {
		m := v.Monitor("t1")
		defer m.Close()
		disks, err := qmp.NewBlock(m).SampleDisks(ctx, "t1", qmp.SampleOptions{})
		if err != nil || len(disks) != 1 {
			t.Fatalf("sample through libvirt: %+v, %v", disks, err)
		}
		if disks[0].QOMPath != "/machine/peripheral/virtio-disk0/virtio-backend" || disks[0].Node == "" {
			t.Errorf("libvirt disk identity: %+v", disks[0])
		}
		_, err = m.Execute(ctx, "block_set_io_throttle", map[string]any{"id": "nonsense", "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0})
		var qe *qmp.Error
		if !errors.As(err, &qe) || qe.Class == "" || qe.Desc == "" {
			t.Errorf("QMP error through libvirt: %#v", err)
		}
		raw, _ := json.Marshal(disks[0])
		t.Logf("passthrough sample: %s", raw)
	})

	t.Run("paused domain in bulk stats", func(t *testing.T) {
		if _, err := d.Virsh(ctx, "suspend", "t1"); err != nil {
			t.Fatal(err)
		}
		defer d.Virsh(ctx, "resume", "t1")
		s, err := v.DomainStats(ctx)
		if err != nil || len(s["t1"].Disks) != 1 || s["t1"].State != "paused" || s["t1"].Reason != "user" {
			t.Fatalf("bulk stats with t1 paused: %+v, %v", s, err)
		}
	})

	t.Run("domain events", func(t *testing.T) {
		ectx, stop := context.WithCancel(ctx)
		defer stop()
		evs := v.SubscribeDomainEvents(ectx, 64)
		if _, err := d.Virsh(ctx, "blkdeviotune", "t1", "vda", "--write-iops-sec", "400", "--live"); err != nil {
			t.Fatal(err)
		}
		defer d.Virsh(ctx, "blkdeviotune", "t1", "vda", "--write-iops-sec", "0", "--live")
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-evs:
				t.Logf("event %+v", ev)
				if ev.Kind == "tunable" && ev.Domain == "t1" && ev.Disk == "vda" {
					// The live XML follows, and says what BlockIOTune says.
					doc, err := v.DomainXML(ctx, "t1", false)
					if err != nil {
						t.Fatal(err)
					}
					disks, err := virt.ParseDomainDisks(doc)
					live, err2 := v.BlockIOTune(ctx, "t1", "vda", false)
					live.Group = virt.OwnGroup(live.Group)
					if err != nil || err2 != nil || len(disks) != 1 || disks[0].Throttle != live || live.IOPSWrite != 400 {
						t.Errorf("XML throttle %+v, BlockIOTune %+v (%v %v)", disks, live, err, err2)
					}
					return
				}
			case <-timeout:
				t.Fatal("no tunable event within 10s of blkdeviotune")
			}
		}
	})

	t.Run("reconnect after libvirtd restart", func(t *testing.T) {
		if err := d.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := v.BlockStats(ctx, "t1")
			if err == nil && v.Reconnects() >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no reconnect after restart: reconnects=%d err=%v", v.Reconnects(), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}
