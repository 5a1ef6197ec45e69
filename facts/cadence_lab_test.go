package facts

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/lab"
)

// Under a real libvirtd, paused domains (their QEMU moves no I/O) are
// read every idle interval, a watched one every interval, and each read
// asks libvirt only for the domains due.
func TestRealLibvirtCadence(t *testing.T) {
	lab.NeedLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	for _, name := range []string{"q1", "q2", "w"} {
		img := filepath.Join(t.TempDir(), name+".qcow2")
		if err := lab.CreateImage(ctx, img, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
			t.Fatal(err)
		}
		d.DefineDomainT(t, lab.DomainSpec{Name: name, Paused: true, Disks: []lab.DomainDisk{{Target: "vda", Image: img}}})
	}
	// ObserveCall runs on the XML readers' goroutines too.
	var callsMu sync.Mutex
	calls := map[string]int{}
	o := Options{LibvirtSocket: d.SocketPath(), LibvirtPidDir: filepath.Join(d.Dir, "run", "libvirt", "qemu"),
		Interval: time.Second, IdleInterval: 10 * time.Second, CallTimeout: 10 * time.Second,
		Watched:     func(vm string) string { return map[string]string{"w": "rule r pending"}[vm] },
		ObserveCall: func(_, call string, _ time.Duration) { callsMu.Lock(); calls[call]++; callsMu.Unlock() }}
	s, err := Open(ctx, o, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Libvirt().Close()
	now := time.Unix(1e9, 0)
	s.lv.cad.now = func() time.Time { return now }
	var got []string
	for i := 0; i < 13; i++ {
		disks, errs, _ := s.Sample(ctx)
		if len(errs) != 0 {
			t.Fatalf("cycle %d: %v", i, errs)
		}
		got = append(got, fmt.Sprint(len(disks)))
		now = now.Add(time.Second)
	}
	// All three on the first two cycles (first sample, first reading of
	// the process counters), then w alone, the quiet ones again at the
	// tenth second after their last read.
	callsMu.Lock()
	defer callsMu.Unlock()
	if want := "[3 3 1 1 1 1 1 1 1 1 1 3 1]"; fmt.Sprint(got) != want {
		t.Errorf("disks per cycle %v, want %s (calls %v, cadences %+v)", got, want, calls, s.Cadences())
	}
	if calls["list_get_stats"] != 10 || calls["get_all_domain_stats"] != 3 {
		t.Errorf("calls %v; want the bulk call when all are due, DomainListGetStats else", calls)
	}
	c := s.Cadences()
	if c["q1"].Reason != ReasonQuiet || c["q1"].Every != 10*time.Second || c["w"].Reason != ReasonWatchedBy+"rule r pending" {
		t.Errorf("cadences %+v", c)
	}
}
