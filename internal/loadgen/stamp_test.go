package loadgen

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// ramDisk is a device in memory; drop makes writes at one offset vanish
// (a lost write).
type ramDisk struct {
	mu   sync.Mutex
	b    []byte
	drop int64
}

func (d *ramDisk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return copy(p, d.b[off:]), nil
}

func (d *ramDisk) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == d.drop {
		return len(p), nil
	}
	return copy(d.b[off:], p), nil
}

func stampRun(t *testing.T, d *ramDisk) []VerifyResult {
	t.Helper()
	p := Defaults()
	p.QueueDepth, p.Span = 2, 64<<10
	p.Phases = []Phase{{StampWrite, 0, 150 * time.Millisecond}, {Verify, 0, 100 * time.Millisecond}}
	var mu sync.Mutex
	var res []VerifyResult
	r := &Runner{P: p, Dev: d, Size: int64(len(d.b)), Verified: func(v VerifyResult) {
		mu.Lock()
		defer mu.Unlock()
		res = append(res, v)
	}}
	if err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestStampVerifyCatchesALostWrite(t *testing.T) {
	good := &ramDisk{b: make([]byte, 1<<20), drop: -1}
	res := stampRun(t, good)
	if len(res) != 2 {
		t.Fatalf("verify passes: %+v", res)
	}
	for _, v := range res {
		if v.Bad != 0 || v.Checked == 0 {
			t.Fatalf("clean disk: %s", v)
		}
	}
	if n, err := CheckStamps(bytes.NewReader(good.b), 1<<20, 4096); err != nil || n == 0 {
		t.Fatalf("host check: %d stamped, %v", n, err)
	}

	lossy := &ramDisk{b: make([]byte, 1<<20), drop: 4096}
	bad := 0
	for _, v := range stampRun(t, lossy) {
		bad += v.Bad
		if v.Bad > 0 && !strings.Contains(v.String(), "FAILED") {
			t.Errorf("report %s", v)
		}
	}
	if bad == 0 {
		t.Fatal("a lost write went unnoticed")
	}
	good.b[8192+100] ^= 0xff
	if _, err := CheckStamps(bytes.NewReader(good.b), 1<<20, 4096); err == nil {
		t.Fatal("a torn block went unnoticed")
	}
}
