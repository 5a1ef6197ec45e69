package loadgen

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	p, err := ParseCmdline("console=ttyS0 panic=-1 qtune.disk=/dev/vdb qtune.bs=8K qtune.qd=4 qtune.readpct=70 qtune.span=64M qtune.loops=0 qtune.phases=randwrite:3000:20s,idle:0:5s,randrw:50:1m")
	if err != nil {
		t.Fatal(err)
	}
	want := []Phase{{RandWrite, 3000, 20 * time.Second}, {Idle, 0, 5 * time.Second}, {RandRW, 50, time.Minute}}
	if p.Disk != "/dev/vdb" || p.BlockSize != 8192 || p.QueueDepth != 4 || p.ReadPct != 70 || p.Span != 64<<20 || p.Loops != 0 {
		t.Errorf("parsed %+v", p)
	}
	if len(p.Phases) != 3 {
		t.Fatalf("phases %+v", p.Phases)
	}
	for i := range want {
		if p.Phases[i] != want[i] {
			t.Errorf("phase %d = %+v, want %+v", i, p.Phases[i], want[i])
		}
	}
	back, err := ParseCmdline(p.Cmdline())
	if err != nil {
		t.Fatal(err)
	}
	if back.Cmdline() != p.Cmdline() {
		t.Errorf("round trip:\n%s\n%s", p.Cmdline(), back.Cmdline())
	}
}

func TestParseCmdlineSinglePhase(t *testing.T) {
	p, err := ParseCmdline("qtune.mode=randread qtune.rate=500 qtune.duration=30s")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Phases) != 1 || p.Phases[0] != (Phase{RandRead, 500, 30 * time.Second}) {
		t.Fatalf("phases %+v", p.Phases)
	}
}

func TestParseCmdlineReportsEveryError(t *testing.T) {
	_, err := ParseCmdline("qtune.bs=1000 qtune.qd=0 qtune.phases=scribble:10:1s qtune.bogus=1 qtune.mode=read")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"qtune.bogus=1", "multiple of 512", "queue depth 0", "unknown pattern \"scribble\"", "excludes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestPhaseAt(t *testing.T) {
	p := Params{Loops: 2, Phases: []Phase{{RandWrite, 1, 10 * time.Second}, {Idle, 0, 5 * time.Second}}}
	for _, tc := range []struct {
		t    time.Duration
		idx  int
		done bool
	}{
		{0, 0, false}, {9 * time.Second, 0, false}, {10 * time.Second, 1, false},
		{16 * time.Second, 0, false}, {26 * time.Second, 1, false}, {30 * time.Second, 1, true},
	} {
		idx, done := p.PhaseAt(tc.t)
		if idx != tc.idx || done != tc.done {
			t.Errorf("PhaseAt(%v) = %d,%v; want %d,%v", tc.t, idx, done, tc.idx, tc.done)
		}
	}
	p.Loops = 0
	if _, done := p.PhaseAt(time.Hour); done {
		t.Error("loops=0 ended")
	}
}

// memDev counts operations and checks alignment of offsets.
type memDev struct {
	mu            sync.Mutex
	reads, writes int
	misaligned    int
	bs            int64
	maxOff        int64
}

func (m *memDev) ReadAt(b []byte, off int64) (int, error)  { m.op(true, off); return len(b), nil }
func (m *memDev) WriteAt(b []byte, off int64) (int, error) { m.op(false, off); return len(b), nil }
func (m *memDev) op(read bool, off int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if read {
		m.reads++
	} else {
		m.writes++
	}
	if off%m.bs != 0 {
		m.misaligned++
	}
	if off > m.maxOff {
		m.maxOff = off
	}
}

func TestRunnerHoldsRateAndMix(t *testing.T) {
	dev := &memDev{bs: 4096}
	p := Params{BlockSize: 4096, QueueDepth: 4, ReadPct: 25, Loops: 1, Seed: 3,
		Phases: []Phase{{RandRW, 400, time.Second}, {Idle, 0, 200 * time.Millisecond}, {SeqWrite, 100, 500 * time.Millisecond}}}
	var reports atomic.Int32
	var ready atomic.Bool
	r := &Runner{P: p, Dev: dev, Size: 1 << 20, Every: 100 * time.Millisecond,
		Report: func(Progress) { reports.Add(1) }, Ready: func() { ready.Store(true) }}
	start := time.Now()
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1700*time.Millisecond || d > 3*time.Second {
		t.Errorf("ran %v, want about 1.7s", d)
	}
	total := dev.reads + dev.writes
	// 400 ops in the first second plus 50 in the last half second.
	if total < 400 || total > 500 {
		t.Errorf("%d ops, want about 450", total)
	}
	if share := float64(dev.reads) / float64(400); share < 0.15 || share > 0.35 {
		t.Errorf("reads %d of ~400 mixed ops, want about 25%%", dev.reads)
	}
	if dev.misaligned != 0 || dev.maxOff >= 1<<20 {
		t.Errorf("misaligned %d, max offset %d", dev.misaligned, dev.maxOff)
	}
	if reports.Load() < 10 || !ready.Load() {
		t.Errorf("reports %d, ready %v", reports.Load(), ready.Load())
	}
}

func TestProgressLine(t *testing.T) {
	p := Progress{Elapsed: 1500 * time.Millisecond, Phase: 1, Pattern: RandWrite, Reads: 1, Writes: 2, IOPS: 3}
	if got, want := p.String(), "qtune-load t=1.5 phase=1 mode=randwrite reads=1 writes=2 errors=0 iops=3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
