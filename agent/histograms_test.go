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
// already has a histogram someone else set; it returns the arguments of
// every block-latency-histogram-set the VM received, and what stops its
// source.
func histogramAgent(t *testing.T, enabled *bool) (*Agent, *bytes.Buffer, func() []map[string]any, func()) {
	t.Helper()
	vm := fakeVM(t)
	var stats []map[string]any
	b, err := os.ReadFile(filepath.Join("..", "qmp", "testdata", "query-blockstats.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &stats)
	for _, st := range stats {
		if st["qdev"] != drive1 {
			st["stats"].(map[string]any)["rd_latency_histogram"] = map[string]any{"boundaries": []int{10}, "bins": []int{0, 0}}
		}
	}
	vm.Reply("query-blockstats", stats)
	var mu sync.Mutex
	var sets []map[string]any
	vm.Handle("block-latency-histogram-set", func(args json.RawMessage) (any, string, string) {
		var m map[string]any
		json.Unmarshal(args, &m)
		mu.Lock()
		sets = append(sets, m)
		mu.Unlock()
		return map[string]any{}, "", ""
	})
	dir := t.TempDir()
	if err := os.Symlink(vm.Path, filepath.Join(dir, "vm.sock")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.QMPDir, cfg.CallTimeout, cfg.HistogramsEnabled = dir, 5*time.Second, enabled
	var logs bytes.Buffer
	a := New(cfg, "", hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}))
	stop := startQMPSource(t, cfg, a)
	return a, &logs, func() []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]any(nil), sets...)
	}, stop
}

func loadSet(t *testing.T, src string) *policy.Set {
	t.Helper()
	set, _, err := policy.Parse(map[string][]byte{"p.hcl": []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// sampleOnce takes one sample; a runner that has just answered may not
// be waiting for the next request yet (busy), so that is retried.
func sampleOnce(t *testing.T, a *Agent) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, errs, _ := a.src.Sample(context.Background())
		if len(errs) == 0 {
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
