package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// metricName finds qtune metric names in PromQL; names of recorded series
// (vm_disk:qtune_...:rate5m) are not ours and are left out.
var metricName = regexp.MustCompile(`(^|[^:a-z0-9_])(qtune_[a-z0-9_]+)`)

// exportedMetrics are the metric names this package registers, read from
// its source so that no list can drift from it, and those of the fleet
// package, whose collector the agent registers when a fleet is configured
// (checked here, so the scan cannot outlive the registration).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	wiring, err := os.ReadFile("jobs.go")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`MustRegister\(f\.Collector\(\)\)`).Match(wiring) {
		t.Fatal("the agent no longer registers the fleet's collector: its metrics are not exported")
	}
	fleetFiles, err := filepath.Glob("../fleet/*.go")
	if err != nil || len(fleetFiles) == 0 {
		t.Fatalf("fleet sources: %v %v", fleetFiles, err)
	}
	files = append(files, fleetFiles...)
	lit := regexp.MustCompile(`"(qtune_[a-z0-9_]+)"`)
	out := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range lit.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
	}
	if len(out) < 20 || !out["qtune_disk_finding"] || !out["qtune_disk_write_ops_total"] || !out["qtune_fleet_lease_ok"] {
		t.Fatalf("found only %d metric names in the agent's source: %v", len(out), out)
	}
	return out
}

// unknownMetrics lists the qtune metrics text uses that the agent does
// not export (a histogram's _bucket, _sum and _count count as its name).
func unknownMetrics(text string, known map[string]bool) []string {
	seen := map[string]bool{}
	for _, m := range metricName.FindAllStringSubmatch(text, -1) {
		name := m[2]
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			seen[name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func TestUnknownMetricsIsNotBlind(t *testing.T) {
	known := map[string]bool{"qtune_vms": true, "qtune_cycle_duration_seconds": true}
	got := unknownMetrics(`rate(qtune_cycle_duration_seconds_bucket[5m]) + qtune_vms + qtune_nope + vm:qtune_recorded:rate5m`, known)
	if len(got) != 1 || got[0] != "qtune_nope" {
		t.Fatalf("%v", got)
	}
}

// Every expression of the Grafana dashboard queries metrics qtune
// exports, and the dashboard is the JSON Grafana imports.
func TestGrafanaDashboardQueriesQtuneMetrics(t *testing.T) {
	b, err := os.ReadFile("../examples/grafana/qtune-host.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard %q (uid %q) with %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	known := exportedMetrics(t)
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			if bad := unknownMetrics(tg.Expr, known); len(bad) > 0 || !strings.Contains(tg.Expr, "qtune_") {
				t.Errorf("panel %q: %s queries %v, not exported by qtune", p.Title, tg.Expr, bad)
			}
		}
	}
	for _, v := range dash.Templating.List {
		if bad := unknownMetrics(v.Definition, known); len(bad) > 0 {
			t.Errorf("variable %s: %v", v.Name, bad)
		}
	}
	if exprs < 15 {
		t.Errorf("only %d queries", exprs)
	}
}

// The example alerting and recording rules (checked and unit-tested by
// promtool in make test) use only metrics qtune exports.
func TestPrometheusRulesQueryQtuneMetrics(t *testing.T) {
	files, _ := filepath.Glob("../examples/prometheus/*.yml")
	if len(files) < 2 {
		t.Fatalf("rule files: %v", files)
	}
	known := exportedMetrics(t)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var exprs []string
		for _, line := range strings.Split(string(b), "\n") {
			if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "description:") && !strings.HasPrefix(l, "summary:") {
				exprs = append(exprs, l)
			}
		}
		if bad := unknownMetrics(strings.Join(exprs, "\n"), known); len(bad) > 0 {
			t.Errorf("%s uses %v, not exported by qtune", f, bad)
		}
	}
}
