package main

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The layering the packages keep, read from the build itself with
// go list: the clients and the benchmarks speak to a running agent
// through api's documents and never link the daemon; api stands on
// nothing of qtune's but sample, policy and the build's identity.
const agentPkg = "github.com/qtune/qtune/agent"

// agentFiles are the files of this command that may import the daemon:
// qtune agent runs it.
var agentFiles = map[string]bool{"agent.go": true}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

func TestBenchDoesNotLinkTheAgent(t *testing.T) {
	for _, dep := range goList(t, "-deps", "../../bench") {
		if dep == agentPkg {
			t.Errorf("bench links %s; read the agent's documents through github.com/qtune/qtune/api", agentPkg)
		}
	}
}

func TestAPIStandsOnSampleAndPolicyOnly(t *testing.T) {
	allowed := map[string]bool{"github.com/qtune/qtune/api": true, "github.com/qtune/qtune/internal/buildinfo": true}
	for _, p := range append([]string{"github.com/qtune/qtune/internal/sample", "github.com/qtune/qtune/policy"},
		goList(t, "-deps", "github.com/qtune/qtune/internal/sample", "github.com/qtune/qtune/policy")...) {
		allowed[p] = true
	}
	for _, dep := range goList(t, "-deps", "../../api") {
		if strings.HasPrefix(dep, "github.com/qtune/qtune/") && !allowed[dep] {
			t.Errorf("api depends on %s", dep)
		}
	}
}

// Only the agent command's own file imports the daemon; test files may
// where they need more than its documents (its config, to load one).
func TestOnlyTheAgentCommandImportsTheAgent(t *testing.T) {
	files := goList(t, "-f", `{{join .GoFiles " "}}`, ".")
	if len(files) < 5 {
		t.Fatalf("go list found only %v", files)
	}
	fset := token.NewFileSet()
	seen := false
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(".", name), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == agentPkg {
				seen = seen || name == "agent.go"
				if !agentFiles[name] {
					t.Errorf("%s imports %s; a client reads the agent's documents through github.com/qtune/qtune/api", name, agentPkg)
				}
			}
		}
	}
	if !seen {
		t.Errorf("agent.go does not import %s: the rule checks the wrong files", agentPkg)
	}
}

// floors are the packages by floor, lowest first (docs/architecture.md
// draws them): a package imports only packages on floors below its own.
// The internal/ packages are the ground floor; cmd/ and bench the top.
var floors = [][]string{
	{"qmp", "policy", "fleet"},
	{"virt", "api", "state", "config"},
	{"facts", "tuning"},
	{"jobs", "doctor"},
	{"agent"},
}

func TestNoPackageImportsOneAboveIt(t *testing.T) {
	const mod = "github.com/qtune/qtune/"
	floor := map[string]int{}
	for i, pkgs := range floors {
		for _, p := range pkgs {
			floor[mod+p] = i + 1
		}
	}
	floorOf := func(p string) int {
		switch {
		case strings.HasPrefix(p, mod+"internal/"):
			return 0
		case strings.HasPrefix(p, mod+"cmd/"), p == mod+"bench":
			return len(floors) + 1
		}
		for q, f := range floor {
			if p == q || strings.HasPrefix(p, q+"/") {
				return f
			}
		}
		return -1
	}
	lines := goList(t, "-f", `{{.ImportPath}}:{{join .Imports ","}}`, mod+"...")
	if len(lines) < 15 {
		t.Fatalf("go list found only %d packages", len(lines))
	}
	for _, line := range lines {
		pkg, imps, _ := strings.Cut(line, ":")
		f := floorOf(pkg)
		if f < 0 {
			t.Errorf("package %s is on no floor: add it to floors and docs/architecture.md", pkg)
			continue
		}
		for _, imp := range strings.Split(imps, ",") {
			if !strings.HasPrefix(imp, mod) || strings.HasPrefix(pkg, imp+"/") {
				continue // outside qtune, or a package's own parent (state/statetest uses state)
			}
			if g := floorOf(imp); g >= f && f > 0 {
				t.Errorf("%s (floor %d) imports %s (floor %d): a package imports only floors below it", pkg, f, imp, g)
			}
		}
	}
}
