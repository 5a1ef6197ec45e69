package facts

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/virt"
)

// fakeLibvirt answers bulk stats and domain XML from maps, counts XML
// reads, and hangs the XML of domains in hang until the call's deadline.
type fakeLibvirt struct {
	mu      sync.Mutex
	stats   map[string]virt.DomainStat
	xml     map[string]string
	hang    map[string]bool
	reads   map[string]int
	release chan struct{} // ends hung reads early
	ioErrs  map[string]map[string]string
	ioFail  error
	// calls counts the stats calls: "" for the bulk call, else the
	// domains a DomainStatsOf asked for, joined by commas.
	calls []string
}

func (f *fakeLibvirt) Domains(ctx context.Context) ([]virt.DomainInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]virt.DomainInfo, 0, len(f.stats))
	for k, v := range f.stats {
		out = append(out, virt.DomainInfo{Name: k, UUID: v.UUID})
	}
	return out, nil
}

func (f *fakeLibvirt) DomainStatsOf(ctx context.Context, doms []virt.DomainInfo) (map[string]virt.DomainStat, error) {
	all, _ := f.DomainStats(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[len(f.calls)-1] = ""
	out := map[string]virt.DomainStat{}
	var names []string
	for _, d := range doms {
		if st, ok := all[d.Name]; ok {
			out[d.Name] = st
		}
		names = append(names, d.Name)
	}
	sort.Strings(names)
	f.calls[len(f.calls)-1] = strings.Join(names, ",")
	return out, nil
}

func (f *fakeLibvirt) DiskErrors(ctx context.Context, dom string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ioFail != nil {
		return nil, f.ioFail
	}
	out := map[string]string{}
	for k, v := range f.ioErrs[dom] {
		out[k] = v
	}
	return out, nil
}

func (f *fakeLibvirt) setIOError(dom, disk, status, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ioErrs == nil {
		f.ioErrs = map[string]map[string]string{}
	}
	f.ioErrs[dom] = map[string]string{disk: status}
	st := f.stats[dom]
	st.State, st.Reason = "paused", reason
	f.stats[dom] = st
}

func (f *fakeLibvirt) DomainStats(ctx context.Context, names ...string) (map[string]virt.DomainStat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "")
	out := map[string]virt.DomainStat{}
	for k, v := range f.stats {
		v.Disks = append([]sample.Disk(nil), v.Disks...)
		for i := range v.Disks {
			v.Disks[i].Time = time.Now()
		}
		out[k] = v
	}
	return out, nil
}

func (f *fakeLibvirt) DomainXML(ctx context.Context, dom string, inactive bool) (string, error) {
	f.mu.Lock()
	f.reads[dom]++
	hang, doc := f.hang[dom], f.xml[dom]
	f.mu.Unlock()
	if hang {
		select {
		case <-ctx.Done():
		case <-f.release:
		}
		return "", context.DeadlineExceeded
	}
	return doc, nil
}

func (f *fakeLibvirt) readsOf(dom string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[dom]
}

func (f *fakeLibvirt) setXML(dom, doc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.xml[dom] = doc
}

// fakeSink records what the source tells the backend.
type fakeSink struct {
	mu        sync.Mutex
	gen       map[string]uint64
	throttles map[string]map[string]sample.Throttle
}

func (s *fakeSink) ThrottleGeneration(d string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen[d]
}
func (s *fakeSink) NoteThrottles(d string, gen uint64, t map[string]sample.Throttle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen[d] == gen {
		s.throttles[d] = t
	}
}
func (s *fakeSink) ThrottlesChanged(d string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen[d]++
	delete(s.throttles, d)
}
func (s *fakeSink) Forget(d string)                    { s.ThrottlesChanged(d) }
func (s *fakeSink) NoteJobEvent(string, string, int32) {}

func domXML(iops int) string {
	return fmt.Sprintf(`<domain><devices><disk type='file' device='disk'><driver type='raw' cache='none'/>
<source file='/nonexistent/a.raw'/><target dev='vda'/><alias name='virtio-disk0'/>
<iotune><write_iops_sec>%d</write_iops_sec></iotune></disk></devices></domain>`, iops)
}

func newFakeSource(t *testing.T, doms ...string) (*libvirtSource, *fakeLibvirt, *fakeSink) {
	f := &fakeLibvirt{stats: map[string]virt.DomainStat{}, xml: map[string]string{}, hang: map[string]bool{}, reads: map[string]int{},
		release: make(chan struct{})}
	for _, d := range doms {
		f.stats[d] = virt.DomainStat{State: "running", Reason: "booted", Disks: []sample.Disk{{VM: d, Name: "vda"}}}
		f.xml[d] = domXML(100)
	}
	sink := &fakeSink{gen: map[string]uint64{}, throttles: map[string]map[string]sample.Throttle{}}
	o := Options{CallTimeout: 2 * time.Second, Interval: 2 * time.Second}
	return newLibvirtSourceWith(f, sink, o, hclog.NewNullLogger()), f, sink
}

func TestLibvirtSourceReadsXMLOnceAndOnEvents(t *testing.T) {
	s, f, sink := newFakeSource(t, "a", "b")
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		disks, errs, _ := s.sample(ctx)
		if len(disks) != 2 || len(errs) != 0 {
			t.Fatalf("cycle %d: %+v %v", i, disks, errs)
		}
		for _, d := range disks {
			if d.Throttle.IOPSWrite != 100 || d.Format != "raw" || !d.CacheDirect || d.QOMPath == "" {
				t.Fatalf("facts not filled from the XML: %+v", d)
			}
		}
	}
	if f.readsOf("a") != 1 || f.readsOf("b") != 1 {
		t.Fatalf("5 cycles read the XML %d and %d times, want once each", f.readsOf("a"), f.readsOf("b"))
	}
	// blkdeviotune behind qtune's back: the tunable event, then the next
	// cycle shows the new value, and the backend's view was dropped at once.
	f.setXML("a", domXML(300))
	s.event(virt.DomainEvent{Domain: "a", Kind: "tunable", Disk: "vda"})
	if _, ok := sink.throttles["a"]; ok {
		t.Error("the backend still answers throttle reads of a from before the event")
	}
	disks, _, _ := s.sample(ctx)
	for _, d := range disks {
		want := map[string]uint64{"a": 300, "b": 100}[d.VM]
		if d.Throttle.IOPSWrite != want {
			t.Errorf("%s after the tunable event: write_iops %d, want %d", d.VM, d.Throttle.IOPSWrite, want)
		}
	}
	if sink.throttles["a"]["vda"].IOPSWrite != 300 {
		t.Errorf("backend view after the re-read: %+v", sink.throttles["a"])
	}
	if f.readsOf("a") != 2 || f.readsOf("b") != 1 {
		t.Errorf("XML reads after one event on a: a %d, b %d", f.readsOf("a"), f.readsOf("b"))
	}
	// A reconnect may have lost events: everything is read again.
	s.event(virt.DomainEvent{Kind: "reconnected"})
	s.sample(ctx)
	if f.readsOf("a") != 3 || f.readsOf("b") != 2 {
		t.Errorf("XML reads after a reconnect: a %d, b %d", f.readsOf("a"), f.readsOf("b"))
	}
}

func TestLibvirtSourceHungDomainCostsOnlyItself(t *testing.T) {
	s, f, _ := newFakeSource(t, "ok", "hung")
	f.hang["hung"] = true
	start := time.Now()
	disks, errs, _ := s.sample(context.Background())
	took := time.Since(start)
	if len(disks) != 1 || disks[0].VM != "ok" || errs["hung"] == nil {
		t.Fatalf("disks %+v errs %v", disks, errs)
	}
	if took > factsWaitPerCall+time.Second {
		t.Errorf("a hung domain held the cycle for %v", took)
	}
	// The next cycles do not pile up reads of the hung domain: one is
	// under way until its own deadline.
	s.sample(context.Background())
	s.sample(context.Background())
	if n := f.readsOf("hung"); n != 1 {
		t.Errorf("%d XML reads of the hung domain in flight, want 1", n)
	}
	// End the hung read so that no goroutine outlives the test.
	close(f.release)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		idle := s.facts["hung"].reading == nil
		s.mu.Unlock()
		if idle {
			return
		}
	}
	t.Error("the hung read never ended")
}

func TestLibvirtSourceDomainStates(t *testing.T) {
	s, f, _ := newFakeSource(t, "run", "paused")
	f.stats["paused"] = virt.DomainStat{State: "paused", Reason: "ioerror", Disks: f.stats["paused"].Disks}
	disks, _, _ := s.sample(context.Background())
	if len(disks) != 2 {
		t.Fatalf("a paused domain's disks are sampled too: %+v", disks)
	}
	st := s.DomainStates()
	if st["paused"] != (VMState{"paused", "ioerror"}) || st["run"] != (VMState{"running", "booted"}) {
		t.Errorf("states %+v", st)
	}
}

// A disk libvirt counts but the XML read does not know yet has no facts:
// it is left out (never a zero throttle or a default cache mode), and the
// XML is read again, after which it is sampled with its facts.
func TestLibvirtSourceDiskWithoutFactsIsLeftOut(t *testing.T) {
	s, f, _ := newFakeSource(t, "a")
	ctx := context.Background()
	s.sample(ctx)
	f.mu.Lock()
	f.stats["a"] = virt.DomainStat{State: "running", Disks: []sample.Disk{{VM: "a", Name: "vda"}, {VM: "a", Name: "vdb"}}}
	f.mu.Unlock()
	disks, _, _ := s.sample(ctx)
	if len(disks) != 1 || disks[0].Name != "vda" {
		t.Fatalf("disks %+v: want vda alone while vdb has no facts", disks)
	}
	f.setXML("a", strings.Replace(domXML(100), "</devices>", `<disk type='file' device='disk'><driver type='raw' cache='none'/>
<source file='/nonexistent/b.raw'/><target dev='vdb'/><alias name='virtio-disk1'/>
<iotune><write_iops_sec>50</write_iops_sec></iotune></disk></devices>`, 1))
	for i := 0; i < 3; i++ {
		disks, _, _ = s.sample(ctx)
		for _, d := range disks {
			if d.Name == "vdb" {
				if d.Throttle.IOPSWrite != 50 || d.Format != "raw" {
					t.Fatalf("vdb without its facts: %+v", d)
				}
				return
			}
		}
	}
	t.Fatalf("vdb never sampled after the XML re-read (%d reads)", f.readsOf("a"))
}

// io-status under libvirt: read with the XML (no call per cycle), "ok"
// when libvirt reports no error, the error once a domain pauses on one,
// and unknown (empty) when the errors cannot be read.
func TestLibvirtSourceIOStatus(t *testing.T) {
	s, f, _ := newFakeSource(t, "a")
	ctx := context.Background()
	status := func() string {
		disks, _, _ := s.sample(ctx)
		if len(disks) != 1 {
			t.Fatalf("disks %+v", disks)
		}
		return disks[0].IOStatus
	}
	if got := status(); got != "ok" {
		t.Fatalf("io-status %q, want ok", got)
	}
	f.setIOError("a", "vda", "nospace", "ioerror")
	got := ""
	for i := 0; i < 3 && got != "nospace"; i++ {
		got = status()
	}
	if got != "nospace" {
		t.Fatalf("io-status %q after the domain paused on ENOSPC, want nospace within 3 cycles", got)
	}
	reads := f.readsOf("a")
	status()
	status()
	if f.readsOf("a") != reads {
		t.Errorf("the XML read again once the error is known (%d -> %d)", reads, f.readsOf("a"))
	}

	s, f, _ = newFakeSource(t, "b")
	f.ioFail = errors.New("libvirt: no disk errors for you")
	if disks, _, _ := s.sample(ctx); len(disks) != 1 || disks[0].IOStatus != "" {
		t.Fatalf("io-status when the errors cannot be read: %+v, want unknown", disks)
	}
}
