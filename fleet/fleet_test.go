package fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestCountLimit(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 2})
	h1, h2 := host(t, cfg, "h1"), host(t, cfg, "h2")
	mustGrant(t, h1, cp("a", 0, "nfs"))
	mustGrant(t, h2, cp("b", 0, "nfs"))
	mustWait(t, h1, cp("c", 0, "nfs"), "2 of 2 copies running")
	if h1.State("c") != Waiting || h1.State("a") != Held {
		t.Fatalf("states a=%s c=%s", h1.State("a"), h1.State("c"))
	}
	held, waiting := heldJobs(t, h2)
	if held != "h1:a,h2:b" || waiting != "h1:c" {
		t.Fatalf("held %q waiting %q", held, waiting)
	}
	if err := h2.Release(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	mustGrant(t, h1, cp("c", 0, "nfs"))
	// Held again is a no-op that stays granted.
	mustGrant(t, h1, cp("c", 0, "nfs"))
}

func TestBandwidthLimit(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "ceph", Dirs: []string{"/ceph"}, MaxCopies: 10, MaxSpeed: 16 << 20})
	h1, h2 := host(t, cfg, "h1"), host(t, cfg, "h2")
	mustGrant(t, h1, cp("a", 10<<20, "ceph"))
	mustWait(t, h2, cp("b", 8<<20, "ceph"), "10MiB/s of 16MiB/s taken, this copy needs 8MiB/s")
	h2.Release(context.Background(), "b")
	mustGrant(t, h2, cp("c", 6<<20, "ceph"))
	// An unbounded copy counts as the whole budget.
	mustWait(t, h2, cp("d", 0, "ceph"), "needs 16MiB/s")
	if got := h2.Cap(cp("d", 0, "ceph")); got != 16<<20 {
		t.Errorf("cap %d", got)
	}
}

// Copies are served in the order they queued: a later one that would fit
// waits behind an earlier one that does not, on any host.
func TestFairness(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 3, MaxSpeed: 16 << 20})
	h1, h2, h3 := host(t, cfg, "h1"), host(t, cfg, "h2"), host(t, cfg, "h3")
	mustGrant(t, h1, cp("a", 10<<20, "nfs"))
	mustWait(t, h2, cp("early", 10<<20, "nfs"), "taken")
	mustWait(t, h3, cp("late", 2<<20, "nfs"), "1 copies queued before this one (first: h2 vm-early/vda mirror)")
	mustWait(t, h3, cp("late", 2<<20, "nfs"), "queued before")
	h1.Release(context.Background(), "a")
	mustWait(t, h3, cp("late", 2<<20, "nfs"), "queued before")
	mustGrant(t, h2, cp("early", 10<<20, "nfs"))
	mustGrant(t, h3, cp("late", 2<<20, "nfs"))
}

// A copy needing two budgets takes both at once or waits for both, and
// one that waits holds nothing.
func TestTwoBudgets(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "src", Dirs: []string{"/src"}, MaxCopies: 1}, Budget{Name: "dst", Dirs: []string{"/dst"}, MaxCopies: 1})
	h1, h2 := host(t, cfg, "h1"), host(t, cfg, "h2")
	mustGrant(t, h1, cp("a", 0, "dst"))
	mustWait(t, h2, cp("b", 0, "src", "dst"), "budget dst: 1 of 1")
	if held, _ := heldJobs(t, h1); held != "h1:a" {
		t.Fatalf("held %q: a waiting copy took a slot", held)
	}
	h1.Release(context.Background(), "a")
	mustGrant(t, h2, cp("b", 0, "src", "dst"))
	if held, _ := heldJobs(t, h1); held != "h2:b,h2:b" {
		t.Fatalf("held %q", held)
	}
	if _, _, err := h1.Acquire(context.Background(), cp("x", 0, "nope")); err == nil {
		t.Error("unknown budget accepted")
	}
}

// Two hosts race for the last slot, many times over: exactly one wins
// each time.
func TestRaceForLastSlot(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 2})
	hosts := []*Fleet{host(t, cfg, "h1"), host(t, cfg, "h2"), host(t, cfg, "h3")}
	mustGrant(t, hosts[0], cp("steady", 0, "nfs"))
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		var wins, answers sync.WaitGroup
		granted := make([]bool, len(hosts))
		start := make(chan struct{})
		for k, h := range hosts {
			wins.Add(1)
			answers.Add(1)
			go func() {
				defer wins.Done()
				<-start
				ok, _, err := h.Acquire(ctx, cp(fmt.Sprintf("r%d-%d", i, k), 0, "nfs"))
				if err != nil {
					t.Error(err)
				}
				granted[k] = ok
			}()
			answers.Done()
		}
		close(start)
		wins.Wait()
		n := 0
		for _, g := range granted {
			if g {
				n++
			}
		}
		held, _ := heldJobs(t, hosts[1])
		if n != 1 {
			t.Fatalf("round %d: %d hosts won the last slot (held %s)", i, n, held)
		}
		for k, h := range hosts {
			if err := h.Release(ctx, fmt.Sprintf("r%d-%d", i, k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if held, waiting := heldJobs(t, hosts[2]); held != "h1:steady" || waiting != "" {
		t.Fatalf("left held %q waiting %q", held, waiting)
	}
}

// A killed host's slots return when its lease expires.
func TestKilledHostSlotsReturn(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 1})
	h1, h2 := host(t, cfg, "h1"), host(t, cfg, "h2")
	mustGrant(t, h1, cp("a", 0, "nfs"))
	mustWait(t, h2, cp("b", 0, "nfs"), "1 of 1")
	h1.Close()
	took := eventually(t, ttl+3*time.Second, "h2 takes the slot of the killed h1", func() bool {
		ok, _, _ := h2.Acquire(context.Background(), cp("b", 0, "nfs"))
		return ok
	})
	t.Logf("slot returned %s after the kill (TTL %s)", took.Round(time.Millisecond), ttl)
	if took < ttl/2 {
		t.Errorf("slot returned after %s, before the lease could expire", took)
	}
}

func TestTTLAsGranted(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e)
	cfg.LeaseTTL = 2 * time.Second
	h := host(t, cfg, "h1")
	if got := h.TTL(); got != 3*time.Second {
		t.Errorf("TTL %s, want the 3 s the lab's etcd grants at least", got)
	}
}
