package qmp

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func countSent(f *fakeExec, command string) int {
	n := 0
	for _, s := range f.sent {
		if s.command == command {
			n++
		}
	}
	return n
}

func TestDiskSamplerReadsQueryBlockOnlyWhenNeeded(t *testing.T) {
	f := golden(t)
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	s := NewDiskSampler(NewBlock(f))
	s.Now = func() time.Time { return now }
	ctx := context.Background()
	first, health, err := s.Sample(ctx, "vm1", SampleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Same disks, same facts, same counters as the uncached path.
	plain, plainHealth, err := NewBlock(golden(t)).SampleDisksHealth(ctx, "vm1", SampleOptions{Now: func() time.Time { return now }})
	if err != nil || !reflect.DeepEqual(first, plain) || !reflect.DeepEqual(health, plainHealth) {
		t.Fatalf("cached sample differs:\n%+v\n%+v\n%+v\n%+v (%v)", first, plain, health, plainHealth, err)
	}
	for i := 0; i < 9; i++ {
		now = now.Add(time.Second)
		if _, _, err := s.Sample(ctx, "vm1", SampleOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if qb, qs := countSent(f, "query-block"), countSent(f, "query-blockstats"); qb != 1 || qs != 10 {
		t.Fatalf("10 samples sent query-block %d times, query-blockstats %d; want 1 and 10", qb, qs)
	}
	s.Invalidate()
	s.Sample(ctx, "vm1", SampleOptions{})
	now = now.Add(31 * time.Second)
	s.Sample(ctx, "vm1", SampleOptions{})
	if qb := countSent(f, "query-block"); qb != 3 {
		t.Errorf("after Invalidate and MaxAge: query-block sent %d times, want 3", qb)
	}

	// A device the cached query-block did not list: read it again.
	var stats []json.RawMessage
	json.Unmarshal(f.replies["query-blockstats"], &stats)
	extra := `{"device": "", "qdev": "/machine/peripheral/hot0/virtio-backend", "stats": {}}`
	stats = append(stats, json.RawMessage(extra))
	f.replies["query-blockstats"], _ = json.Marshal(stats)
	now = now.Add(time.Second)
	s.Sample(ctx, "vm1", SampleOptions{})
	if qb := countSent(f, "query-block"); qb != 4 {
		t.Errorf("an unknown device in the counters: query-block sent %d times, want 4", qb)
	}
}
