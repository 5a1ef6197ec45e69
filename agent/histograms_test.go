package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/facts"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/tuning"
)

const (
	tailRule = `rule "tail" {
  when = p50_over(disk.read_latency_p99_ms, "10s") > 50
  throttle { read_iops = 100 }
}
`
	avgRule = `rule "avg" {
  when = disk.read_latency_ms > 50
  throttle { read_iops = 100 }
}
`
	drive1 = "/machine/peripheral/drive1/virtio-backend"
)

// histogramAgent is an agent over one scripted QMP VM whose disk0
// already has a histogram someone else set, with a state store and an
// executor; query-blockstats shows the histograms the VM was given. It
// returns the arguments of every block-latency-histogram-set the VM
// received, and what stops its source.
func histogramAgent(t *testing.T, enabled *bool) (*Agent, *bytes.Buffer, func() []map[string]any, func()) {
	t.Helper()
	r := newHistRig(t, enabled)
	return r.a, r.logs, r.sets, r.stop
}

// histRig is histogramAgent's VM and agent, and what a test needs to
// start the agent again over the same store and VM.
type histRig struct {
	a      *Agent
	logs   *bytes.Buffer
	sets   func() []map[string]any
	remove func() // drops drive1's histogram as another client would
	stop   func() // stops the source of the agent started last
	cfg    config.Config
}

func newHistRig(t *testing.T, enabled *bool) *histRig {
	t.Helper()
	vm := fakeVM(t)
	var stats []map[string]any
	b, err := os.ReadFile(filepath.Join("..", "qmp", "testdata", "query-blockstats.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &stats)
	var mu sync.Mutex
	var sets []map[string]any
	hist := map[string]any{} // qdev: boundaries qtune's sets gave it
	for _, st := range stats {
		if st["qdev"] != drive1 {
			st["stats"].(map[string]any)["rd_latency_histogram"] = map[string]any{"boundaries": []int{10}, "bins": []int{0, 0}}
		}
	}
	vm.Handle("query-blockstats", func(json.RawMessage) (any, string, string) {
		mu.Lock()
		defer mu.Unlock()
		st := stats[0]["stats"].(map[string]any)
		delete(st, "rd_latency_histogram")
		delete(st, "wr_latency_histogram")
		delete(st, "flush_latency_histogram")
		if bounds, ok := hist[drive1]; ok {
			h := map[string]any{"boundaries": bounds, "bins": []int{0, 0, 0, 0, 0, 0, 0}}
			st["rd_latency_histogram"], st["wr_latency_histogram"], st["flush_latency_histogram"] = h, h, h
		}
		return stats, "", ""
	})
	vm.Handle("block-latency-histogram-set", func(args json.RawMessage) (any, string, string) {
		var m map[string]any
		json.Unmarshal(args, &m)
		mu.Lock()
		defer mu.Unlock()
		sets = append(sets, m)
		if b, ok := m["boundaries"]; ok {
			hist[m["id"].(string)] = b
		} else {
			delete(hist, m["id"].(string))
		}
		return map[string]any{}, "", ""
	})
	if stats[0]["qdev"] != drive1 {
		t.Fatalf("captured blockstats: %s is not first", drive1)
	}
	dir := t.TempDir()
	if err := os.Symlink(vm.Path, filepath.Join(dir, "vm.sock")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.QMPDir, cfg.StateDir, cfg.CallTimeout, cfg.HistogramsEnabled = dir, t.TempDir(), 5*time.Second, enabled
	r := &histRig{cfg: cfg, logs: &bytes.Buffer{},
		sets: func() []map[string]any {
			mu.Lock()
			defer mu.Unlock()
			return append([]map[string]any(nil), sets...)
		},
		remove: func() {
			mu.Lock()
			defer mu.Unlock()
			delete(hist, drive1)
		}}
	r.start(t)
	return r
}

// start starts an agent over the rig's VM and state directory.
func (r *histRig) start(t *testing.T) *Agent {
	t.Helper()
	a := New(r.cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: r.logs, Level: hclog.Info}))
	r.stop = startQMPSource(t, r.cfg, a)
	store, err := state.OpenStore(r.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	a.store = store
	a.exec = tuning.NewExecutor(a.src.Backend(), store, tuning.Options{Log: hclog.NewNullLogger(), Identify: a.vmIdentity})
	a.eval = policy.NewEvaluator(&policy.Set{})
	r.a = a
	return a
}

// kill stops the agent started last as SIGKILL would: nothing is
// turned off, the store is left as it is.
func (r *histRig) kill() {
	r.stop()
	r.a.store.Close()
}

func loadSet(t *testing.T, src string) *policy.Set {
	t.Helper()
	set, _, err := policy.Parse(map[string][]byte{"p.hcl": []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// sampleOnce takes one sample and reconciles the owned knobs with it,
// as a cycle does (histograms are brought in line there); a runner that
// has just answered may not be waiting for the next request yet (busy),
// so that is retried.
func sampleOnce(t *testing.T, a *Agent) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		disks, errs, gone := a.src.Sample(context.Background())
		if len(errs) == 0 {
			a.reconcileOwned(context.Background(), time.Now(), disks, errs, gone)
			return
		}
		if !errors.Is(errs["vm"], facts.ErrBusy) || time.Now().After(end) {
			t.Fatalf("sample: %v", errs)
		}
	}
}

// A rule reading a p99 metric turns histograms on (config unset) on the
// disks that had none; a reload without such a rule turns them off on
// exactly those disks.
func TestRuleNeedingHistogramsEnablesThem(t *testing.T) {
	a, logs, sets, stop := histogramAgent(t, nil)
	a.setInForce(loadSet(t, avgRule+tailRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	a.setInForce(loadSet(t, avgRule+tailRule), api.PolicyFromFiles, time.Now()) // a reload: no new log line
	sampleOnce(t, a)
	got := sets()
	if len(got) != 1 || got[0]["id"] != drive1 || got[0]["boundaries"] == nil {
		t.Fatalf("histogram sets %v, want one for %s with boundaries (disk0 has its own)", got, drive1)
	}
	if st := a.Snapshot().Histograms; !st.On || st.Why != "rule tail" {
		t.Errorf("status %+v", st)
	}
	a.setInForce(loadSet(t, avgRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	got = sets()
	if len(got) != 2 || got[1]["id"] != drive1 || got[1]["boundaries"] != nil {
		t.Fatalf("histogram sets %v, want the second to disable %s", got, drive1)
	}
	if st := a.Snapshot().Histograms; st.On || st.Why != "no rule needs them" {
		t.Errorf("status %+v", st)
	}
	stop()
	out := logs.String()
	if n := strings.Count(out, "latency histograms enabled on every disk: rule tail reads disk.read_latency_p99_ms"); n != 1 {
		t.Errorf("enable logged %d times:\n%s", n, out)
	}
	if !strings.Contains(out, "latency histograms disabled where qtune enabled them") {
		t.Errorf("disable not logged:\n%s", out)
	}
}

// histograms { enabled = false } wins over a rule: nothing is sent, and
// the log and status say which rule's metric stays unknown.
func TestHistogramsOffByConfigWarns(t *testing.T) {
	off := false
	a, logs, sets, stop := histogramAgent(t, &off)
	a.setInForce(loadSet(t, avgRule+tailRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	sampleOnce(t, a)
	if got := sets(); len(got) != 0 {
		t.Fatalf("histogram sets %v with histograms disabled by config", got)
	}
	if st := a.Snapshot().Histograms; st.On || st.Why != "disabled by config" || len(st.Unknown) != 1 || st.Unknown[0] != "tail" {
		t.Errorf("status %+v", st)
	}
	stop()
	if out := logs.String(); !strings.Contains(out, "[WARN]  rule tail reads disk.read_latency_p99_ms, which will be unknown: latency histograms are off (disabled by config)") {
		t.Errorf("no warning:\n%s", out)
	}
}

// histograms { enabled = true } turns them on with no rule needing them.
func TestHistogramsOnByConfig(t *testing.T) {
	on := true
	a, _, sets, _ := histogramAgent(t, &on)
	a.setInForce(loadSet(t, avgRule), api.PolicyFromFiles, time.Now())
	sampleOnce(t, a)
	if got := sets(); len(got) != 1 || got[0]["id"] != drive1 {
		t.Fatalf("histogram sets %v", got)
	}
	if st := a.Snapshot().Histograms; !st.On || st.Why != "config" {
		t.Errorf("status %+v", st)
	}
}
