package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/qmpfake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeVM serves query-block and query-blockstats replies captured from
// QEMU 7.2, with the write counter moving 500 a call.
func fakeVM(t *testing.T) *qmpfake.Server {
	t.Helper()
	s := qmpfake.New(t)
	var block, stats []map[string]any
	for file, dst := range map[string]*[]map[string]any{"query-block.json": &block, "query-blockstats.json": &stats} {
		b, err := os.ReadFile(filepath.Join("..", "qmp", "testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(b, dst)
	}
	s.Reply("query-block", block)
	writes := 0.0
	s.Handle("query-blockstats", func(json.RawMessage) (any, string, string) {
		writes += 500
		for _, st := range stats {
			st["stats"].(map[string]any)["wr_operations"] = writes
		}
		return stats, "", ""
	})
	return s
}

// The agent runs its loop, then stops on cancel leaving no goroutine
// behind (goleak checks at the end of the package's tests).
func TestAgentRunsAndStopsCleanly(t *testing.T) {
	vm := fakeVM(t)
	dir := t.TempDir()
	if err := os.Symlink(vm.Path, filepath.Join(dir, "fake.sock")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.QMPDir, cfg.PolicyDir, cfg.StateDir = dir, "../examples/policy.d", t.TempDir()
	cfg.ControlSocket = filepath.Join(cfg.StateDir, "control.sock")
	cfg.Listen, cfg.Interval, cfg.CallTimeout = "127.0.0.1:0", time.Second, 500*time.Millisecond
	cfg.JobsConfig.FleetHost = "hv-7"
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn}))
	var notes []string
	a.SetNotify(func(s string) { notes = append(notes, s) })
	loop := onFakeClock(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// The first cycle runs at once; the next two come from the clock's
	// ticker, and the rates need two samples.
	if at := loop.cycled(t); !at.Equal(loop.clk.Now()) {
		t.Fatalf("first cycle at %v, want %v", at, loop.clk.Now())
	}
	loop.tick(t)
	loop.tick(t)
	st := a.Snapshot()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if len(st.VMs) != 1 || st.VMs[0].Name != "fake" || len(st.VMs[0].Disks) != 2 {
		t.Fatalf("status %+v", st.VMs)
	}
	if st.Policy.Error != "" || len(st.Policy.Rules) != 6 {
		t.Errorf("policy %+v", st.Policy)
	}
	// The records a domain carries name the host as the fleet does.
	if h := a.exec.Host(); h != "hv-7" {
		t.Errorf("the records name the host %q, want its fleet name hv-7", h)
	}
	if len(notes) < 2 || notes[0] != "READY=1" || notes[len(notes)-1] != "STOPPING=1" {
		t.Errorf("notifications %q", notes)
	}
}

// Without a fleet name the records name the host by its hostname.
func TestRecordsHostIsTheHostnameWithoutAFleetName(t *testing.T) {
	want, err := os.Hostname()
	if err != nil || want == "" {
		t.Skipf("no hostname here: %v", err)
	}
	if got := recordsHost(config.Defaults()); got != want {
		t.Errorf("records host %q, want the hostname %q", got, want)
	}
	c := config.Defaults()
	c.JobsConfig.FleetHost = "hv-7"
	if got := recordsHost(c); got != "hv-7" {
		t.Errorf("records host %q, want the fleet name hv-7", got)
	}
}
