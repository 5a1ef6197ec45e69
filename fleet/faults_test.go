package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every member down: a new copy is not granted and says why, a running
// copy is told its slot is lost; when etcd returns, both go on.
func TestEtcdDown(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 2})
	h1 := host(t, cfg, "h1")
	mustGrant(t, h1, cp("running", 4<<20, "nfs"))
	drain(h1.Changed())
	if err := e.StopAll(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcdT(t) })
	start := time.Now()
	ok, why, _ := h1.Acquire(context.Background(), cp("new", 0, "nfs"))
	if ok || why == "" {
		t.Fatalf("granted=%v why=%q with etcd down", ok, why)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Acquire took %s with etcd down", d)
	}
	t.Logf("new copy, etcd down: %s", why)
	select {
	case <-h1.Changed():
	case <-time.After(h1.TTL() + 2*time.Second):
		t.Fatal("no change signalled for the lost slot")
	}
	if s := h1.State("running"); s != Lost || h1.LeaseOK() {
		t.Fatalf("running copy %s, lease ok %v", s, h1.LeaseOK())
	}
	ok, why, _ = h1.Acquire(context.Background(), cp("running", 4<<20, "nfs"))
	if ok || !strings.Contains(why, "floor speed") {
		t.Fatalf("lost slot: granted=%v why=%q", ok, why)
	}
	if v := testutil.ToFloat64(metric(h1, "qtune_fleet_lease_ok")); v != 0 {
		t.Errorf("qtune_fleet_lease_ok %v with etcd down", v)
	}
	ok, why, _ = h1.Acquire(context.Background(), cp("new", 0, "nfs"))
	if ok || !strings.Contains(why, "no fleet lease") {
		t.Fatalf("new copy with the lease lost: granted=%v why=%q", ok, why)
	}
	time.Sleep(h1.TTL()) // down for longer than the TTL
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the lost slot taken again", func() bool { return h1.State("running") == Held })
	if !h1.LeaseOK() {
		t.Error("slot held without a lease")
	}
	eventually(t, 10*time.Second, "the new copy granted", func() bool {
		ok, _, _ := h1.Acquire(context.Background(), cp("new", 0, "nfs"))
		return ok
	})
	if held, waiting := heldJobs(t, h1); held != "h1:running,h1:new" || waiting != "" {
		t.Fatalf("held %q waiting %q", held, waiting)
	}
	// The slot moved to the new lease: it outlives the old one.
	time.Sleep(h1.TTL() + time.Second)
	if held, _ := heldJobs(t, h1); held != "h1:running,h1:new" {
		t.Fatalf("after the old lease's TTL: held %q", held)
	}
}

// The leader stopped in the middle of a copy: the budget still holds, and
// the copy keeps (or at once takes back) its slot.
func TestLeaderStopped(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 1})
	h1, h2 := host(t, cfg, "h1"), host(t, cfg, "h2")
	mustGrant(t, h1, cp("a", 0, "nfs"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Members[lead].Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcdT(t) })
	deadline := time.Now().Add(2 * h1.TTL())
	for time.Now().Before(deadline) {
		if ok, _, _ := h2.Acquire(ctx, cp("b", 0, "nfs")); ok {
			held, _ := heldJobs(t, h2)
			t.Fatalf("h2 granted while h1 runs, leader stopped (held %s)", held)
		}
		time.Sleep(200 * time.Millisecond)
	}
	eventually(t, 10*time.Second, "h1 holds its slot", func() bool { return h1.State("a") == Held })
	if held, waiting := heldJobs(t, h2); held != "h1:a" || waiting != "h2:b" {
		t.Fatalf("held %q waiting %q", held, waiting)
	}
}

// An agent restarted within the TTL takes back the slot of its running
// copy and releases those of copies that ended while it was away.
func TestRestartRetakeAndReleaseExcept(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 2})
	old := host(t, cfg, "h1")
	mustGrant(t, old, cp("live", 0, "nfs"))
	mustGrant(t, old, cp("ended", 0, "nfs"))
	mustWait(t, old, cp("queued-then-ended", 0, "nfs"), "2 of 2")
	old.Close()
	h1 := host(t, cfg, "h1")
	ctx := context.Background()
	ok, why, err := h1.Retake(ctx, cp("live", 0, "nfs"))
	if !ok || err != nil {
		t.Fatalf("retake: %v %q %v", ok, why, err)
	}
	if err := h1.ReleaseExcept(ctx, []string{"live"}); err != nil {
		t.Fatal(err)
	}
	if held, waiting := heldJobs(t, h1); held != "h1:live" || waiting != "" {
		t.Fatalf("held %q waiting %q", held, waiting)
	}
	time.Sleep(h1.TTL() + time.Second) // the old lease expires
	if held, _ := heldJobs(t, h1); held != "h1:live" {
		t.Fatalf("after the old lease expired: held %q", held)
	}
}

// A killed agent, restarted after another host took its slot, queues its
// running copy before copies not started yet.
func TestRetakeQueuesFirst(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 1})
	old, h2, h3 := host(t, cfg, "h1"), host(t, cfg, "h2"), host(t, cfg, "h3")
	mustGrant(t, old, cp("a", 0, "nfs"))
	mustWait(t, h2, cp("b", 0, "nfs"), "1 of 1")
	mustWait(t, h3, cp("c", 0, "nfs"), "queued before")
	old.Close()
	eventually(t, 2*old.TTL()+2*time.Second, "h2 takes the killed host's slot", func() bool {
		ok, _, _ := h2.Acquire(context.Background(), cp("b", 0, "nfs"))
		return ok
	})
	h1 := host(t, cfg, "h1")
	ctx := context.Background()
	ok, why, _ := h1.Retake(ctx, cp("a", 0, "nfs"))
	if ok || h1.State("a") != Lost {
		t.Fatalf("retake granted=%v state=%s (%s) while h2 holds the slot", ok, h1.State("a"), why)
	}
	if _, waiting := heldJobs(t, h1); waiting != "h1:a,h3:c" {
		t.Fatalf("waiting %q, want the running copy first", waiting)
	}
	h2.Release(ctx, "b")
	mustWait(t, h3, cp("c", 0, "nfs"), "queued before this one (first: h1")
	mustGrant(t, h1, cp("a", 0, "nfs"))
	if h1.State("a") != Held {
		t.Fatalf("state %s", h1.State("a"))
	}
}

func TestMetrics(t *testing.T) {
	e := etcdT(t)
	cfg := testConfig(e, Budget{Name: "nfs", Dirs: []string{"/nfs"}, MaxCopies: 1, MaxSpeed: 16 << 20})
	h1, h2 := host(t, cfg, "h1"), host(t, cfg, "h2")
	mustGrant(t, h1, cp("a", 4<<20, "nfs"))
	mustWait(t, h2, cp("b", 0, "nfs"), "1 of 1")
	want := `
# HELP qtune_fleet_budget_slots Copies of a fleet budget by state: held and waiting fleet-wide, and the budget's limit (max_copies).
# TYPE qtune_fleet_budget_slots gauge
qtune_fleet_budget_slots{budget="nfs",state="held"} 1
qtune_fleet_budget_slots{budget="nfs",state="limit"} 1
qtune_fleet_budget_slots{budget="nfs",state="waiting"} 1
# HELP qtune_fleet_budget_speed_bytes Bandwidth of a fleet budget, bytes/s: held fleet-wide (as counted against the budget) and its limit (max_speed; absent when unbounded).
# TYPE qtune_fleet_budget_speed_bytes gauge
qtune_fleet_budget_speed_bytes{budget="nfs",state="held"} 4.194304e+06
qtune_fleet_budget_speed_bytes{budget="nfs",state="limit"} 1.6777216e+07
# HELP qtune_fleet_lease_ok 1 while this host holds a live lease with etcd; 0 while its copies' slots are lost or none can be taken.
# TYPE qtune_fleet_lease_ok gauge
qtune_fleet_lease_ok 1
# HELP qtune_fleet_up 1 when this scrape could read the budgets from etcd.
# TYPE qtune_fleet_up gauge
qtune_fleet_up 1
`
	if err := testutil.CollectAndCompare(h2.Collector(), strings.NewReader(want),
		"qtune_fleet_budget_slots", "qtune_fleet_budget_speed_bytes", "qtune_fleet_lease_ok", "qtune_fleet_up"); err != nil {
		t.Error(err)
	}
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// metric collects one metric of f's collector.
func metric(f *Fleet, name string) *oneMetric { return &oneMetric{c: f.Collector(), name: name} }
