package facts

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/virt"
)

// hookLog records what a source tells those who act on VMs.
type hookLog struct {
	mu        sync.Mutex
	connected []VM
	gone      []string
	noted     map[string]map[string]sample.Throttle
}

func (h *hookLog) VMConnected(vm VM) {
	h.mu.Lock()
	h.connected = append(h.connected, vm)
	h.mu.Unlock()
}
func (h *hookLog) VMGone(name string) { h.mu.Lock(); h.gone = append(h.gone, name); h.mu.Unlock() }

func (h *hookLog) ThrottleGeneration(string) uint64 { return 0 }
func (h *hookLog) NoteThrottles(d string, _ uint64, t map[string]sample.Throttle) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.noted == nil {
		h.noted = map[string]map[string]sample.Throttle{}
	}
	h.noted[d] = t
}
func (h *hookLog) ThrottlesChanged(string)            {}
func (h *hookLog) Forget(string)                      {}
func (h *hookLog) NoteJobEvent(string, string, int32) {}

// sampleUntil samples until every VM answers (a runner just started, a
// domain's XML still being read) or a minute passes.
func sampleUntil(t *testing.T, s *Source, want int) []sample.Disk {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		disks, errs, _ := s.Sample(context.Background())
		if len(errs) == 0 && len(disks) == want {
			return disks
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d disks, errors %v", len(disks), errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Against a real QEMU: a VM found in the directory is sampled with its
// qcow2 facts, its L2 cache QEMU's default for the disk, its run state
// and identity read; the hooks get its connection (pid, a monitor that
// answers) before the first sample, and hear it go when its socket does.
func TestRealQEMUThroughFacts(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := filepath.Join(t.TempDir(), "d.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 8<<30, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	vm := lab.StartVMT(t, lab.VMConfig{Name: "qemu-name", Paused: true, Disks: []lab.Disk{{ID: "disk0", Image: img}}})
	dir := t.TempDir()
	sock := filepath.Join(dir, "calm.sock")
	if err := os.Symlink(vm.QMPPath(), sock); err != nil {
		t.Fatal(err)
	}
	hooks := &hookLog{}
	s, err := OpenSampler(ctx, Options{QMPDir: dir, Interval: time.Second, CallTimeout: 10 * time.Second, Details: true, QMP: hooks}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := sampleUntil(t, s.Source, 1)[0]
	if d.VM != "calm" || d.Name != "disk0" || d.Format != "qcow2" || d.ClusterSize != 64<<10 || d.L2CacheSize != 1<<20 {
		t.Errorf("disk %+v; want calm/disk0, qcow2, 64 KiB clusters, the 1 MiB L2 cache covering 8 GiB", d)
	}
	if det, ok := s.Details("calm"); !ok || det.RunState != "prelaunch" || !det.Disks["disk0"].ErrorsKnown {
		t.Errorf("details %+v (ok %v)", det, ok)
	}
	id, note := s.Identity("calm")
	if !id.Known() || note != "" || id.Socket != sock {
		t.Errorf("identity %+v %q", id, note)
	}
	hooks.mu.Lock()
	conns := append([]VM(nil), hooks.connected...)
	hooks.mu.Unlock()
	if len(conns) != 1 || conns[0].Name != "calm" || conns[0].PID != id.PID {
		t.Fatalf("hooks: connected %+v", conns)
	}
	if _, err := qmp.NewBlock(conns[0].Monitor).QueryStatus(ctx); err != nil {
		t.Errorf("the monitor handed over does not answer: %v", err)
	}
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, _, gone := s.Sample(ctx)
		hooks.mu.Lock()
		told := len(hooks.gone) == 1 && hooks.gone[0] == "calm"
		hooks.mu.Unlock()
		if len(gone) == 1 && told {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("VM never gone: %v, hooks told %v", gone, hooks.gone)
		}
	}
}

// Against a real libvirtd: a paused domain's qcow2 disk comes with the
// facts of its XML (the L2 cache covering the disk, as the agent and
// doctor read it), its details (run state, cache mode) and an identity
// with its QEMU process; the sink is handed the connection and hears the
// throttles in force.
func TestRealLibvirtThroughFacts(t *testing.T) {
	lab.NeedLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	img := filepath.Join(t.TempDir(), "d.qcow2")
	if err := lab.CreateImage(ctx, img, "qcow2", 8<<30, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	d.DefineDomainT(t, lab.DomainSpec{Name: "lv", Paused: true, Disks: []lab.DomainDisk{{Target: "vda", Image: img, Cache: "writeback"}}})
	hooks := &hookLog{}
	var conn *virt.Libvirt
	o := Options{LibvirtSocket: d.SocketPath(), LibvirtPidDir: filepath.Join(d.Dir, "run", "libvirt", "qemu"),
		Interval: time.Second, CallTimeout: 10 * time.Second, Details: true,
		OnLibvirt: func(v *virt.Libvirt) LibvirtSink { conn = v; return hooks }}
	s, err := OpenSampler(ctx, o, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if conn == nil || s.Libvirt() != conn {
		t.Fatal("the sink was not handed the source's connection")
	}
	disk := sampleUntil(t, s.Source, 1)[0]
	if disk.VM != "lv" || disk.Name != "vda" || disk.Format != "qcow2" || disk.L2CacheSize != 1<<20 || disk.L2CacheSize != qmp.L2CacheInForce(disk, 0) {
		t.Errorf("disk %+v; want lv/vda, qcow2, the 1 MiB L2 cache covering 8 GiB", disk)
	}
	if det, ok := s.Details("lv"); !ok || det.RunState != "paused" || det.Disks["vda"].Cache.CacheMode() != "writeback" {
		t.Errorf("details %+v (ok %v)", det, ok)
	}
	if id, _ := s.Identity("lv"); id.UUID == "" || id.PID == 0 {
		t.Errorf("identity %+v; want the UUID and the QEMU process", id)
	}
	hooks.mu.Lock()
	_, noted := hooks.noted["lv"]["vda"]
	hooks.mu.Unlock()
	if !noted {
		t.Errorf("the sink never heard vda's throttles: %+v", hooks.noted)
	}
}
