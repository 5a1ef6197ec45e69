package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	tests := []struct {
		name    string
		v, c, d string
		bi      *debug.BuildInfo
		want    Info
	}{
		{"linker wins", "1.2.3", "deadbeef", "2026-12-07T00:00:00Z", vcs,
			Info{"1.2.3", "deadbeef", "2026-12-07T00:00:00Z", "go1.99"}},
		{"toolchain record", "", "", "", vcs,
			Info{"devel", "abc123-dirty", "2026-01-02T03:04:05Z", "go1.99"}},
		{"go install of a tagged module", "", "", "", &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v0.4.0"}},
			Info{"v0.4.0", "unknown", "unknown", "go1.99"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.v, tt.c, tt.d, tt.bi); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNothingKnown(t *testing.T) {
	i := resolve("", "", "", nil)
	if i.Version != "devel" || i.Commit != "unknown" || i.Date != "unknown" || !strings.HasPrefix(i.GoVersion, "go") {
		t.Fatalf("got %+v", i)
	}
	if s := i.String(); !strings.Contains(s, "qtune devel (commit unknown") {
		t.Fatalf("String() = %q", s)
	}
}
