package facts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeProc is a /proc with the io files of made-up processes.
type fakeProc struct {
	t    *testing.T
	root string
	io   map[int]*procIO
}

func newFakeProc(t *testing.T, pids ...int) *fakeProc {
	p := &fakeProc{t: t, root: t.TempDir(), io: map[int]*procIO{}}
	for _, pid := range pids {
		if err := os.MkdirAll(filepath.Join(p.root, fmt.Sprint(pid)), 0o755); err != nil {
			t.Fatal(err)
		}
		p.io[pid] = &procIO{}
		p.write(pid)
	}
	return p
}

func (p *fakeProc) write(pid int) {
	io := p.io[pid]
	doc := fmt.Sprintf("rchar: %d\nwchar: %d\nsyscr: 1\nsyscw: 1\nread_bytes: %d\nwrite_bytes: %d\ncancelled_write_bytes: 0\n",
		io.rchar, io.wchar, io.readBytes, io.writeBytes)
	if err := os.WriteFile(filepath.Join(p.root, fmt.Sprint(pid), "io"), []byte(doc), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// move adds to a process's counters.
func (p *fakeProc) move(pid int, rchar, wchar, readBytes, writeBytes uint64) {
	io := p.io[pid]
	io.rchar += rchar
	io.wchar += wchar
	io.readBytes += readBytes
	io.writeBytes += writeBytes
	p.write(pid)
}

func TestReadProcIO(t *testing.T) {
	p := newFakeProc(t, 7)
	p.move(7, 1, 2, 3, 4)
	io, err := readProcIO(p.root, 7)
	if err != nil || io != (procIO{rchar: 1, wchar: 2, readBytes: 3, writeBytes: 4}) {
		t.Fatalf("%+v %v", io, err)
	}
	if _, err := readProcIO(p.root, 8); err == nil {
		t.Fatal("a missing process read without error")
	}
	if io, err := readProcIO("/proc", os.Getpid()); err != nil || io.rchar == 0 {
		t.Fatalf("own process: %+v %v", io, err)
	}
}

func TestCadenceSamplesQuietVMsEveryIdleInterval(t *testing.T) {
	proc := newFakeProc(t, 10, 20, 30)
	watched := map[string]string{}
	c := newCadence(Options{Interval: time.Second, IdleInterval: 10 * time.Second, Watched: func(vm string) string { return watched[vm] }})
	c.procRoot = proc.root
	vms := []dueVM{{"busy", 10}, {"quiet", 20}, {"turns", 30}, {"nopid", 0}}
	t0 := time.Unix(1000, 0)
	var quietAt, turnsAt []int
	for i := 0; i < 40; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		proc.move(10, 0, 0, 0, 1<<20) // 1 MiB/s written: busy
		proc.move(20, 20<<10, 20<<10, 0, 0)
		if i >= 25 { // reads served from the page cache: rchar only
			proc.move(30, 8<<20, 0, 0, 0)
		}
		due := c.due(now, vms)
		for vm := range due {
			c.read(vm)
		}
		if !due["busy"] || !due["nopid"] {
			t.Fatalf("second %d: due %v; busy and unreadable VMs are due every interval", i, due)
		}
		if due["quiet"] {
			quietAt = append(quietAt, i)
		}
		if due["turns"] {
			turnsAt = append(turnsAt, i)
		}
	}
	// First sample, then the cycle that reads a first rate, then every
	// ten seconds.
	if fmt.Sprint(quietAt) != "[0 1 11 21 31]" {
		t.Errorf("quiet VM sampled at %v", quietAt)
	}
	// Loud from second 25 (moved between 24 and 25): sampled from 25 on.
	want := "[0 1 11 21 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39]"
	if fmt.Sprint(turnsAt) != want {
		t.Errorf("VM turning loud at 25 sampled at %v, want %v", turnsAt, want)
	}
	// A VM whose reads fail stays due every interval until two succeed.
	failing := newCadence(Options{Interval: time.Second, IdleInterval: 10 * time.Second})
	failing.procRoot = proc.root
	for i := 0; i < 5; i++ {
		if due := failing.due(t0.Add(time.Duration(i)*time.Second), []dueVM{{"quiet", 20}}); !due["quiet"] {
			t.Fatalf("second %d: a VM never read is not due", i)
		}
	}
	info := c.infos()
	if info["quiet"].Reason != ReasonQuiet || info["quiet"].Every != 10*time.Second || info["busy"].Reason != ReasonBusy || info["nopid"].Reason != ReasonNoSignal {
		t.Errorf("cadences %+v", info)
	}
	// Watched: every interval, whatever its I/O.
	watched["quiet"] = "rule r pending"
	for i := 40; i < 43; i++ {
		if due := c.due(t0.Add(time.Duration(i)*time.Second), vms); !due["quiet"] {
			t.Fatalf("second %d: watched VM not due", i)
		}
	}
	if r := c.infos()["quiet"].Reason; r != ReasonWatchedBy+"rule r pending" {
		t.Errorf("reason %q", r)
	}
	// A VM no longer listed is forgotten.
	c.due(t0.Add(50*time.Second), vms[:1])
	if len(c.vms) != 1 {
		t.Errorf("%d VMs kept", len(c.vms))
	}
}

func TestCadenceOffSamplesEveryVM(t *testing.T) {
	c := newCadence(Options{Interval: time.Second, IdleInterval: time.Second})
	for i := 0; i < 5; i++ {
		if due := c.due(time.Unix(int64(i), 0), []dueVM{{"a", 1}, {"b", 0}}); len(due) != 2 {
			t.Fatalf("due %v", due)
		}
	}
	if r := c.infos()["a"].Reason; r != ReasonAll {
		t.Errorf("reason %q", r)
	}
}

func TestLibvirtSourceAsksOnlyDueDomains(t *testing.T) {
	s, f, _ := newFakeSource(t, "a", "b", "c")
	s.interval = time.Second
	s.cad = newCadence(Options{Interval: time.Second, IdleInterval: 10 * time.Second})
	proc := newFakeProc(t, 1, 2, 3)
	s.cad.procRoot = proc.root
	s.pidDir = t.TempDir()
	for i, d := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(s.pidDir, d+".pid"), []byte(fmt.Sprint(i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Unix(5000, 0)
	s.cad.now = func() time.Time { return now }
	ctx := context.Background()
	for i := 0; i < 12; i++ {
		proc.move(1, 0, 0, 0, 4<<20) // a writes
		disks, errs, gone := s.sample(ctx)
		if len(errs) != 0 || len(gone) != 0 {
			t.Fatalf("cycle %d: %v %v", i, errs, gone)
		}
		want := 1
		if i < 2 || i == 11 {
			want = 3
		}
		if len(disks) != want {
			t.Fatalf("cycle %d: %d disks, want %d (calls %q)", i, len(disks), want, f.calls)
		}
		now = now.Add(time.Second)
	}
	// Two bulk calls (all new), a's alone while b and c are quiet, then
	// all three due again: the bulk call.
	want := `["" "" "a" "a" "a" "a" "a" "a" "a" "a" "a" ""]`
	if got := fmt.Sprintf("%q", f.calls); got != want {
		t.Errorf("stats calls %s, want %s", got, want)
	}
	if st := s.DomainStates(); len(st) != 3 {
		t.Errorf("states of quiet domains lost: %v", st)
	}
}
