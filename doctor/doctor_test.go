package doctor

import (
	"os"
	"strings"
	"testing"

	"github.com/qtune/qtune/policy"
)

func TestHandbookIsCurrent(t *testing.T) {
	var b strings.Builder
	if err := WriteHandbook(&b); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../docs/doctor.md")
	if err != nil || string(want) != b.String() {
		t.Fatalf("docs/doctor.md is out of date with doctor/checks.go: run `go run ./cmd/qtune doctor --handbook > docs/doctor.md`")
	}
	for _, c := range Checks {
		if c.Name == "" || c.Means == "" || c.Matters == "" || c.Fix == "" || c.Severity == "" {
			t.Errorf("check %q lacks handbook text", c.Name)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for s, want := range map[Severity]int{OK: 0, Info: 0, Warn: 1, Critical: 2} {
		if got := s.ExitCode(); got != want {
			t.Errorf("%s: exit %d, want %d", s, got, want)
		}
	}
	rs := []Report{{Findings: []Finding{{Severity: Info}}}, {Findings: []Finding{{Severity: Warn}, {Severity: OK}}}}
	if Worst(rs) != Warn {
		t.Errorf("worst %s", Worst(rs))
	}
}

func TestL2Full(t *testing.T) {
	var i ImageInfo
	i.Format, i.VirtualSize, i.ClusterSize = "qcow2", 256<<30, 64<<10
	if got := L2Full(i); got != 32<<20 {
		t.Errorf("256GiB/64KiB: %d", got)
	}
	i.FormatSpecific.Data.ExtendedL2 = true
	if got := L2Full(i); got != 64<<20 {
		t.Errorf("extended L2: %d", got)
	}
	i.Format = "raw"
	if L2Full(i) != 0 {
		t.Error("raw has no L2")
	}
}

// Only what is wrong carries the fix; an ok finding stays short.
func TestFixOnlyOnProblems(t *testing.T) {
	var f ImageFacts
	f.Info.Format, f.Info.ClusterSize, f.Info.VirtualSize = "qcow2", 4096, 32<<30
	f.L2Cache = 32 << 20
	r := CheckImage(f)
	for _, fd := range r.Findings {
		if (fd.Severity > OK) != (fd.Fix != "") {
			t.Errorf("%s %s: fix %q", fd.Check, fd.Severity, fd.Fix)
		}
	}
	if r.Worst() != Warn {
		t.Errorf("worst %s", r.Worst())
	}
}

// A policy snippet the doctor prints must load as it is.
func TestAutomateSnippetsParse(t *testing.T) {
	for _, c := range Checks {
		if !strings.HasPrefix(c.Automate, "rule ") {
			continue
		}
		if _, ps, err := policy.Parse(map[string][]byte{c.Name + ".hcl": []byte(c.Automate)}); err != nil {
			t.Errorf("%s: %v\n%v", c.Name, err, ps)
		}
	}
}
