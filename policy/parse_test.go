package policy

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./policy -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestValidationGolden(t *testing.T) {
	set, problems, err := LoadDir("testdata/bad")
	if set != nil || err == nil {
		t.Fatal("a directory with errors loaded")
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("err is %T, want Problems", err)
	}
	golden(t, "bad.golden", problems.Error()+"\n")
}

func TestExamplesLoadClean(t *testing.T) {
	set, problems, err := LoadDir("../examples/policy.d")
	if err != nil {
		t.Fatal(err)
	}
	if w := problems.Warnings(); len(w) != 0 {
		t.Errorf("warnings in the examples:\n%v", w)
	}
	if len(set.Rules) < 4 {
		t.Errorf("%d example rules", len(set.Rules))
	}
	golden(t, "examples-summary.golden", set.Summary())
}

func TestRuleDefaultsAndParse(t *testing.T) {
	set, _, err := Parse(map[string][]byte{"p.hcl": []byte(`
rule "r" {
  match {
    domain = "tenant-*"
    meta   = { team = "db*" }
  }
  when     = disk.write_iops > 2000 && max_over(disk.read_iops, "2m") < 10
  priority = 7
  persist  = true
  window   = ["01:00-05:00", "22:00-23:30"]
  throttle {
    read_bps       = "50MiB"
    write_bps      = 1048576
    write_bps_max  = "2MiB"
    group          = "tenants"
  }
}`)})
	if err != nil {
		t.Fatal(err)
	}
	r := set.Rules[0]
	if r.For != DefaultFor || r.ClearAfter != DefaultFor || r.Cooldown != DefaultCooldown || r.Mode != ModeEnforce {
		t.Errorf("defaults: for %v clear %v cooldown %v mode %v", r.For, r.ClearAfter, r.Cooldown, r.Mode)
	}
	th := r.Action.Throttle
	if r.Knob != KnobThrottle || th.BPSRead != 50<<20 || th.BPSWrite != 1<<20 || th.BPSWriteMax != 2<<20 || th.Group != "tenants" {
		t.Errorf("throttle %+v", th)
	}
	if r.Priority != 7 || !r.Persist || len(r.Windows) != 2 || r.Match.Meta["team"] != "db*" {
		t.Errorf("rule %+v", r)
	}
	if len(r.sites) != 1 || r.sites[0].fn != "max_over" || r.sites[0].window != 2*time.Minute {
		t.Errorf("window sites %+v", r.sites)
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]uint64{"64MiB": 64 << 20, "1.5GiB": 3 << 29, "512": 512, "10MB": 10e6, "4KiB": 4096} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1MiB", "lots", "5 parsecs"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	if r, _ := ParseRate("50MiB/s"); r != 50<<20 {
		t.Errorf("ParseRate = %d", r)
	}
	if d, _ := ParseDuration("2d"); d != 48*time.Hour {
		t.Errorf("2d = %v", d)
	}
	w, err := ParseWindow("22:00-02:00")
	if err != nil {
		t.Fatal(err)
	}
	at := func(h, m int) time.Time { return time.Date(2024, 1, 1, h, m, 0, 0, time.UTC) }
	if !w.Contains(at(23, 0)) || !w.Contains(at(1, 59)) || w.Contains(at(2, 0)) || w.Contains(at(12, 0)) {
		t.Error("wrapping window")
	}
}

func TestSeries(t *testing.T) {
	s, err := ParseSeries("100x2 _ 7 _x2")
	if err != nil || len(s) != 6 || s[0] != 100 || s[1] != 100 || s[2] == s[2] || s[3] != 7 {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range []string{"", "x3", "1x0", "ax2"} {
		if _, err := ParseSeries(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMetricsDocIsCurrent(t *testing.T) {
	var b strings.Builder
	if err := WriteMetricsDoc(&b); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../docs/metrics.md")
	if err != nil || string(want) != b.String() {
		t.Fatalf("docs/metrics.md is out of date with policy/metrics.go: run `go run ./cmd/qtune policy metrics > docs/metrics.md`")
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/bad/bad.hcl", "testdata/bad/more.hcl", "../examples/policy.d/noisy-neighbour.hcl", "../examples/policy.d/l2-cache.hcl"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`rule "x" { when = avg_over(disk.read_iops, "1m") > 1 && vm.name == "a" ` + "\n" + ` stream {} }`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, problems, err := Parse(map[string][]byte{"fuzz.hcl": b})
		if err == nil && set == nil {
			t.Fatal("no set and no error")
		}
		if err != nil && len(problems.Errors()) == 0 {
			t.Fatal("an error without problems")
		}
	})
}

func TestSelfDefeatGolden(t *testing.T) {
	_, problems, err := LoadDir("testdata/selfdefeat")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "selfdefeat.golden", problems.Error()+"\n")
}

func TestHistogramRules(t *testing.T) {
	set, problems, err := Parse(map[string][]byte{"p.hcl": []byte(`
rule "avg" {
  when = disk.read_latency_ms > 20
  throttle { write_iops = 100 }
}
rule "tail" {
  when = disk.read_iops > 1 && p50_over(disk.read_latency_p99_ms, "10s") > 50
  throttle { read_iops = 100 }
}
`)})
	if err != nil {
		t.Fatal(err)
	}
	got := set.HistogramRules()
	if len(got) != 1 || got[0].Rule != "tail" || got[0].Metric != "disk.read_latency_p99_ms" {
		t.Errorf("histogram rules %+v", got)
	}
	if m := set.Rules[1].Metrics(); len(m) != 2 {
		t.Errorf("metrics of tail: %q", m)
	}
	if n := problems.Notes().Error(); !strings.Contains(n, `rule "tail": disk.read_latency_p99_ms needs QEMU latency histograms`) || strings.Contains(n, `"avg"`) {
		t.Errorf("notes:\n%s", n)
	}
}
