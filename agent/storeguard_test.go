package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/state/statetest"
)

// A store with a corrupted page is refused with a clear error naming it;
// the agent still samples, serves metrics and status, and changes
// nothing.
func TestAgentRefusesCorruptStoreAndKeepsReporting(t *testing.T) {
	vm := fakeVM(t)
	dir := t.TempDir()
	if err := os.Symlink(vm.Path, filepath.Join(dir, "fake.sock")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.QMPDir, cfg.PolicyDir, cfg.StateDir = dir, "../examples/policy.d", t.TempDir()
	cfg.ControlSocket = filepath.Join(t.TempDir(), "control.sock")
	cfg.Listen, cfg.Interval, cfg.CallTimeout = "127.0.0.1:0", time.Second, 500*time.Millisecond
	statetest.Corrupt(t, cfg.StateDir)
	db := filepath.Join(cfg.StateDir, "state.db")
	before, _ := os.ReadFile(db)

	var logs syncBuffer
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn}))
	loop := onFakeClock(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	loop.cycled(t)
	loop.tick(t) // rates need two samples
	if n, _ := testutil.GatherAndCount(a.m.reg, "qtune_disk_write_iops"); n != 2 {
		cancel()
		err := <-done
		t.Fatalf("%d disk write rates while the store is refused, want 2 (Run: %v); log:\n%s", n, err, logs.String())
	}
	st := a.Snapshot()
	ok := gauge(t, a.m, "qtune_state_store_ok")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(st.StoreError, db) || !strings.Contains(st.StoreError, "consistency check") {
		t.Errorf("status store error %q does not say what and where", st.StoreError)
	}
	if ok != 0 {
		t.Errorf("qtune_state_store_ok = %v while refused", ok)
	}
	for _, act := range st.Actions {
		if act.Result != "refused" {
			t.Errorf("action while refused: %+v", act)
		}
	}
	if !strings.Contains(logs.String(), "state store refused") || !strings.Contains(logs.String(), db) {
		t.Errorf("log does not say the store is refused and where:\n%s", logs.String())
	}
	after, _ := os.ReadFile(db)
	if string(before) != string(after) {
		t.Error("the refused store was changed")
	}
}

// gauge reads one unlabelled gauge from the agent's registry.
func gauge(t *testing.T, m *metrics, name string) float64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}
