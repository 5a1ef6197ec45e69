package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
)

// The bash script, run by bash, completes commands, subcommands, flags
// and VM names (from a stand-in for qtune __vms).
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to test the bash completion")
	}
	var script bytes.Buffer
	if code := run(context.Background(), []string{"__completion", "bash"}, &script, os.Stderr); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	path := filepath.Join(t.TempDir(), "qtune.bash")
	driver := `source ` + path + `
qtune() { [[ $1 == __vms ]] && printf 'web-1\nweb-2\n'; }
t() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _qtune; echo "${COMPREPLY[*]}"; }
t qtune po
t qtune policy ""
t qtune policy check --ag
t qtune stats --domain ""
t qtune status --addr 127.0.0.1:1 --j
t qtune jobs start --speed 5MiB mirror ""
t qtune state export -
t qtune agent --log-level w
t qtune ""
`
	if err := os.WriteFile(path, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bash, "-c", driver).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	want := []string{
		"policy",
		"check test metrics",
		"--against-agent",
		"web-1 web-2",
		"--json",
		"web-1 web-2",
		"--libvirt-socket --libvirt-uri -o --state-dir",
		"warn",
		"agent doctor help jobs plan policy state stats status version",
	}
	if got := strings.Split(strings.TrimRight(string(out), "\n"), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCompletionZshScript(t *testing.T) {
	var script bytes.Buffer
	if code := run(context.Background(), []string{"__completion", "zsh"}, &script, os.Stderr); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(script.String(), "#compdef qtune\n") {
		t.Fatal("the zsh script does not start with #compdef")
	}
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		if lab.Required() {
			t.Fatal("QTUNE_LAB=require but zsh not found on PATH (apt-get install zsh)")
		}
		t.Skip("zsh not installed: its syntax is checked where it is (QTUNE_LAB=require makes this a failure)")
	}
	path := filepath.Join(t.TempDir(), "_qtune")
	if err := os.WriteFile(path, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(zsh, "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// compadd and _files stand in for zsh's completion system, which
	// filters the candidates by what is typed.
	driver := `compadd() { shift; print -r -- "$@"; }; compdef() {}; _files() { print FILES "$@"; }
source ` + path + `
qtune() { [[ $1 == __vms ]] && print web-1 web-2; }
t() { words=("$@"); CURRENT=$#; _qtune; }
t qtune ""; t qtune jobs ""; t qtune stats --domain ""; t qtune jobs start mirror ""; t qtune status --a; t qtune agent --policy ""`
	out, err := exec.Command(zsh, "-c", driver).CombinedOutput()
	if err != nil {
		t.Fatalf("zsh: %v\n%s", err, out)
	}
	want := "agent doctor help jobs plan policy state stats status version\nstart cancel\nweb-1 web-2\nweb-1 web-2\n--addr --json\nFILES -/\n"
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

// qtune __vms lists the running agent's VMs, and prints nothing (and
// succeeds) when no agent answers.
func TestCompletionVMs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(api.Status{VMs: []api.VMStatus{{Name: "db-1"}, {Name: "web-2"}}})
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	addr := strings.TrimPrefix(srv.URL, "http://")
	if code := run(context.Background(), []string{"__vms", "--addr", addr}, &out, &errOut); code != exitOK || out.String() != "db-1\nweb-2\n" {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errOut.String())
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	out.Reset()
	if code := run(context.Background(), []string{"__vms", "--addr", dead}, &out, &errOut); code != exitOK || out.Len() != 0 || errOut.Len() != 0 {
		t.Fatalf("no agent: exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
}

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out bytes.Buffer
		if code := run(context.Background(), args, &out, os.Stderr); code != exitOK || !strings.HasPrefix(out.String(), "qtune ") ||
			!strings.Contains(out.String(), "commit ") || !strings.Contains(out.String(), "go1.") {
			t.Fatalf("%v: exit %d, %q", args, code, out.String())
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version", "--json"}, &out, os.Stderr); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var bi map[string]string
	if err := json.Unmarshal(out.Bytes(), &bi); err != nil || bi["version"] == "" || bi["go_version"] == "" {
		t.Fatalf("%v: %s", err, out.String())
	}
	var help bytes.Buffer
	run(context.Background(), []string{"help"}, &help, os.Stderr)
	if strings.Contains(help.String(), "__") {
		t.Fatalf("hidden commands in the usage:\n%s", help.String())
	}
}
