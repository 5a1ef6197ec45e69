package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/policy"
)

const (
	ruleKeep   = "rule \"keep\" {\n  when = disk.write_iops > 100\n  throttle { write_iops = 50 }\n}\n"
	ruleOld    = "rule \"tune\" {\n  when = disk.write_iops > 100\n  throttle { write_iops = 50 }\n}\n"
	ruleNew    = "rule \"tune\" {\n  when = disk.write_iops > 100\n  throttle { write_iops = 70 }\n}\n"
	ruleGone   = "rule \"gone\" {\n  when = disk.read_iops > 100\n  throttle { read_iops = 50 }\n}\n"
	ruleAdded  = "rule \"added\" {\n  when = disk.read_iops > 900\n  throttle { read_iops = 50 }\n}\n"
	brokenRule = "rule \"bad\" {\n  when = disk.write_iops >\n}\n"
)

// fakeAgent serves st on /v1/status and one cycle on /v1/history.
func fakeAgent(t *testing.T, st api.Status) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/status", func(w http.ResponseWriter, _ *http.Request) { json.NewEncoder(w).Encode(st) })
	mux.HandleFunc("/v1/history", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode([]api.Cycle{{At: time.Now(), Points: []sample.Point{}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func policyDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, text := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// inForceStatus is an agent running the set in srcs, from source.
func inForceStatus(t *testing.T, dir, source string, srcs map[string][]byte) api.Status {
	t.Helper()
	set, _, err := policy.Parse(srcs)
	if err != nil {
		t.Fatal(err)
	}
	st := api.Status{Policy: api.PolicyStatus{Dir: dir, Source: source, Defs: set.Defs(), LoadedAt: time.Now()}}
	st.Owned = []api.OwnedStatus{{Owned: api.Owned{Target: api.Target{VM: "web", Disk: "vda"}, Knob: policy.KnobThrottle, Rule: "gone"}}}
	return st
}

func runPolicyCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runPolicy(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), code
}

func TestPolicyCheckAgainstAgent(t *testing.T) {
	dir := policyDir(t, map[string]string{"a.hcl": ruleKeep + ruleNew + ruleAdded})
	running := map[string][]byte{"a.hcl": []byte(ruleKeep + ruleOld + ruleGone)}
	addr := fakeAgent(t, inForceStatus(t, dir, api.PolicyFromFiles, running))

	// The flag may follow the directory, and the directory may be left out.
	for _, args := range [][]string{
		{"check", dir, "--against-agent", "--addr", addr},
		{"check", "--against-agent", "--addr", addr},
	} {
		out, code := runPolicyCmd(t, args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
		for _, want := range []string{
			"the agent runs 3 rules from " + dir,
			"+ added (", "only in the files; a reload would start it",
			"~ tune (", "a reload would run the new definition",
			"- gone: only in the set in force; a reload would remove it and release throttle of web/vda",
			"1 added, 1 changed, 1 removed",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
		if strings.Contains(out, "+ keep") || strings.Contains(out, "~ keep") || strings.Contains(out, "- keep") {
			t.Errorf("%v: an unchanged rule is listed:\n%s", args, out)
		}
	}
}

func TestPolicyCheckAgainstAgentSameSet(t *testing.T) {
	dir := policyDir(t, map[string]string{"a.hcl": ruleKeep})
	addr := fakeAgent(t, inForceStatus(t, dir, api.PolicyFromFiles, map[string][]byte{"other.hcl": []byte(ruleKeep)}))
	out, code := runPolicyCmd(t, "check", "--against-agent", "--addr", addr)
	if code != exitOK || !strings.Contains(out, "no differences") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// While the agent runs its last good set, a directory that still does
// not load is a failure and says that a reload would keep that set.
func TestPolicyCheckAgainstAgentBrokenDir(t *testing.T) {
	dir := policyDir(t, map[string]string{"a.hcl": ruleKeep, "typo.hcl": brokenRule})
	st := inForceStatus(t, dir, api.PolicyFromStore, map[string][]byte{"a.hcl": []byte(ruleKeep)})
	st.Policy.BrokenSince = time.Now()
	addr := fakeAgent(t, st)
	out, code := runPolicyCmd(t, "check", "--against-agent", "--addr", addr)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailure, out)
	}
	for _, want := range []string{"typo.hcl:", "a reload would fail", "the last good set from its state store (1 rules"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPolicyCheckAgainstAgentUnreachable(t *testing.T) {
	out, code := runPolicyCmd(t, "check", "--against-agent", "--addr", "127.0.0.1:1")
	if code != exitFailure || !strings.Contains(out, "--against-agent") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// plan says when it compares with the stored last good set, and what a
// candidate set changes in the rules.
func TestPlanAgainstLastGoodSet(t *testing.T) {
	st := inForceStatus(t, "/etc/qtune/policy.d", api.PolicyFromStore, map[string][]byte{"a.hcl": []byte(ruleKeep + ruleGone)})
	addr := fakeAgent(t, st)
	cand := policyDir(t, map[string]string{"a.hcl": ruleKeep})
	var out, errOut bytes.Buffer
	if code := runPlan(context.Background(), []string{"--addr", addr, "--policy", cand}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"the agent runs the last good set from its state store",
		"this plan compares with that stored set, not with the files on disk",
		"- gone: only in the set in force; a reload would remove it and release throttle of web/vda",
		"- would restore throttle of web/vda",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, out.String())
		}
	}
	st.Policy.Source = api.PolicyFromFiles
	out.Reset()
	runPlan(context.Background(), []string{"--addr", fakeAgent(t, st), "--policy", cand}, &out, &errOut)
	if strings.Contains(out.String(), "stored set") {
		t.Errorf("plan against files speaks of a stored set:\n%s", out.String())
	}
}
