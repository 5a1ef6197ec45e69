package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/qtune/qtune/config"
	"github.com/qtune/qtune/internal/manpage"
	"github.com/qtune/qtune/policy"
)

// sourceFlags finds every flag the command's source defines on a
// FlagSet named fs (fs.String("name", ...), fs.BoolVar(&v, "name", ...)),
// by reading the files rather than running the commands: a flag on a
// FlagSet the man page generator never sees (not made through
// newFlagSet, or a subcommand missing from its command's list) is still
// found here.
func sourceFlags(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "man.go" {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "fs" {
				return true
			}
			arg := 0
			switch sel.Sel.Name {
			case "String", "Bool", "Int", "Int64", "Uint", "Uint64", "Float64", "Duration", "Func", "BoolFunc":
			case "StringVar", "BoolVar", "IntVar", "Int64Var", "UintVar", "Uint64Var", "Float64Var", "DurationVar", "Var", "TextVar":
				arg = 1
			default:
				return true
			}
			if lit, ok := call.Args[arg].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				name, _ := strconv.Unquote(lit.Value)
				found[name] = fset.Position(call.Pos()).String()
			}
			return true
		})
	}
	if len(found) < 20 {
		t.Fatalf("found only %d flags in the source: the scan is broken", len(found))
	}
	return found
}

func TestManListsEveryFlag(t *testing.T) {
	page := commandPage(describe()).String()
	for name, at := range sourceFlags(t) {
		if !strings.Contains(page, `\fB`+manpage.Escape(dashed(name))+`\fR`) {
			t.Errorf("qtune(1) lacks --%s (defined at %s)", name, at)
		}
	}
	for name, c := range commands {
		if c.hidden {
			continue
		}
		if !strings.Contains(page, `.SS "qtune `+manpage.Escape(name)+`"`) {
			t.Errorf("qtune(1) lacks the command %s", name)
		}
		for _, sub := range c.subcommands {
			if !strings.Contains(page, `.SS "qtune `+manpage.Escape(name+" "+sub)+`"`) {
				t.Errorf("qtune(1) lacks qtune %s %s", name, sub)
			}
		}
	}
}

// Every flag of a subcommand is listed under that subcommand, not only
// somewhere on the page.
func TestManFlagsUnderTheirCommand(t *testing.T) {
	for _, d := range describe() {
		if d.usage != "" && !strings.HasPrefix(d.usage, "usage:") {
			t.Errorf("%s: usage is not a usage text: %q", d.name(), d.usage)
		}
	}
	for _, d := range describe() {
		if d.name() == "qtune jobs start" {
			if len(d.flags) < 5 {
				t.Fatalf("qtune jobs start: %d flags", len(d.flags))
			}
			return
		}
	}
	t.Fatal("no qtune jobs start in describe()")
}

func TestManConfigPageHasEverySetting(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "agent.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	page := configPage(string(example)).String()
	desc := exampleComments(string(example))
	keys := manpage.HCLKeys(config.FileSchema())
	if len(keys) < 30 {
		t.Fatalf("only %d settings in the schema", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(page, `\fB`+manpage.Escape(k.Path)+`\fR`) {
			t.Errorf("qtune-agent.hcl(5) lacks %s", k.Path)
		}
		if desc[k.Path].text == "" {
			t.Errorf("examples/agent.hcl does not describe %s (a comment on its line or above it)", k.Path)
		}
	}
}

func TestManPolicyPageHasEveryAttribute(t *testing.T) {
	page := policyPage().String()
	attrs := append(policy.RuleAttributes(), policy.MatchAttributes()...)
	for _, a := range attrs {
		if policyAttrHelp[a] == "" {
			t.Errorf("policyAttrHelp lacks %s", a)
		}
		if !strings.Contains(page, `\fB`+manpage.Escape(a)+`\fR`) {
			t.Errorf("qtune-policy(5) lacks %s", a)
		}
	}
	for _, k := range policy.ActionKinds() {
		if item := ".TP\n\\fB" + manpage.Escape(string(k.Knob)) + `\fR`; k.Driven == strings.Contains(page, item) {
			t.Errorf("qtune-policy(5): action %s listed %v, want it listed only when a rule can write it", k.Knob, !k.Driven)
		}
		for _, a := range k.Attrs {
			if !strings.Contains(page, manpage.Escape(a)) {
				t.Errorf("qtune-policy(5) lacks %s's %s", k.Knob, a)
			}
		}
	}
	for _, m := range policy.Metrics {
		if !strings.Contains(page, `\fB`+manpage.Escape(m.Name)+`\fR`) {
			t.Errorf("qtune-policy(5) lacks the metric %s", m.Name)
		}
	}
}

func TestExampleComments(t *testing.T) {
	got := exampleComments("# Where.\nsock = \"/s\"\n# alt = \"x\"   # another\nlimits {\n  n = 1  # changes\n}\n")
	want := map[string]exampleSetting{"sock": {"Where.", `"/s"`}, "alt": {"another", `"x"`}, "limits": {}, "limits.n": {"changes", "1"}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %+v, want %+v", k, got[k], w)
		}
	}
}
