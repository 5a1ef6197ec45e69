package agent

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qtune/qtune/internal/buildinfo"
)

// /metrics and /v1/status name the same build as qtune version.
func TestBuildInfoInMetricsAndStatus(t *testing.T) {
	bi := buildinfo.Get()
	want := `# HELP qtune_build_info Always 1; the labels say which build of qtune runs (as qtune version prints it).
# TYPE qtune_build_info gauge
qtune_build_info{commit="` + bi.Commit + `",go_version="` + bi.GoVersion + `",version="` + bi.Version + `"} 1
`
	if err := testutil.GatherAndCompare(newMetrics().reg, strings.NewReader(want), "qtune_build_info"); err != nil {
		t.Fatal(err)
	}
	if got := (&Agent{}).Snapshot().Version; got != bi {
		t.Fatalf("status version %+v, want %+v", got, bi)
	}
}
