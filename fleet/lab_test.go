package fleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/qtune/qtune/internal/lab"
	"go.uber.org/goleak"
)

// One three-member cluster serves every test of the package (each test
// under its own key prefix); tests that stop members start them again.
var (
	cluster    *lab.Etcd
	clusterErr error
	prefixes   atomic.Int64
)

// ttl is asked of etcd; the lab's election timeout (1.5 s) makes its
// shortest lease 3 s.
const ttl = 3 * time.Second

func TestMain(m *testing.M) {
	var dir string
	if _, err := exec.LookPath("etcd"); err == nil {
		dir, _ = os.MkdirTemp("", "qtune-fleet-etcd-")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cluster, clusterErr = lab.StartEtcd(ctx, dir, 3)
		cancel()
	}
	before := goleak.IgnoreCurrent()
	code := m.Run()
	if cluster != nil {
		if err := cluster.StopAll(); err != nil {
			fmt.Fprintln(os.Stderr, "stop etcd:", err)
			code = 1
		}
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	// Every Fleet is closed by its test and every member stopped: nothing
	// of the lease loops, the etcd clients or the lab may outlive them.
	if code == 0 {
		if err := goleak.Find(before); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// etcdT returns the shared cluster with every member running.
func etcdT(t *testing.T) *lab.Etcd {
	t.Helper()
	lab.NeedEtcd(t)
	if clusterErr != nil {
		t.Fatalf("etcd cluster: %v", clusterErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cluster.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	return cluster
}

// testConfig is a configuration with a prefix no other test uses.
func testConfig(e *lab.Etcd, budgets ...Budget) Config {
	return Config{Endpoints: e.Endpoints(), LeaseTTL: ttl, RequestTimeout: time.Second, DialTimeout: 5 * time.Second,
		FloorSpeed: 1 << 20, Prefix: fmt.Sprintf("/qtune-test/%d-%d/", os.Getpid(), prefixes.Add(1)), Budgets: budgets}
}

// host starts a Fleet for host name, closed at the test's end (Close
// does not revoke the lease: closing is how a test kills a host).
func host(t *testing.T, cfg Config, name string) *Fleet {
	t.Helper()
	f, err := New(context.Background(), cfg, name, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if !f.LeaseOK() {
		t.Fatalf("%s: no lease after New", name)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			f.Close()
		}
	})
	return f
}

func cp(job string, speed uint64, budgets ...string) Copy {
	return Copy{JobID: job, VM: "vm-" + job, Disk: "vda", Kind: "mirror", Speed: speed, Budgets: budgets}
}

func mustGrant(t *testing.T, f *Fleet, c Copy) {
	t.Helper()
	ok, why, err := f.Acquire(context.Background(), c)
	if err != nil || !ok {
		t.Fatalf("%s %s: not granted: %s (%v)", f.host, c.JobID, why, err)
	}
}

func mustWait(t *testing.T, f *Fleet, c Copy, reason string) {
	t.Helper()
	ok, why, err := f.Acquire(context.Background(), c)
	if ok {
		t.Fatalf("%s %s: granted, want a wait for %q", f.host, c.JobID, reason)
	}
	if !strings.Contains(why, reason) {
		t.Fatalf("%s %s: waits for %q (%v), want %q", f.host, c.JobID, why, err, reason)
	}
}

// eventually polls cond every 100 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func heldJobs(t *testing.T, f *Fleet) (held, waiting string) {
	t.Helper()
	h, w, err := f.Held(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := func(ss []Slot) string {
		var out []string
		for _, s := range ss {
			out = append(out, s.Host+":"+s.JobID)
		}
		return strings.Join(out, ",")
	}
	return names(h), names(w)
}
