package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyCheckExamples(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"policy", "check", "../../examples/policy.d"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"6 rules", "calm-noisy-writers", "knobs owned: cache", "throttle (calm-noisy-writers, protect-neighbours)", "note: rule \"calm-noisy-writers\""} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPolicyCheckReportsEveryError(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"policy", "check", "../../policy/testdata/bad"}, &out, &errOut)
	if code != exitFailure {
		t.Fatalf("exit %d", code)
	}
	if n := strings.Count(errOut.String(), "testdata/bad/"); n < 20 {
		t.Errorf("%d problems reported, want every one:\n%s", n, errOut.String())
	}
	if !strings.Contains(errOut.String(), "bad.hcl:2:10: rule \"a\": unknown metric disk.write_iopz") {
		t.Errorf("no file:line:col message:\n%s", errOut.String())
	}
}

func TestPolicyTestExamplesAndFailure(t *testing.T) {
	files, _ := filepath.Glob("../../examples/tests/*.test.hcl")
	if len(files) < 4 {
		t.Fatalf("example tests: %v", files)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), append([]string{"policy", "test"}, files...), &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	// A test that expects the wrong thing fails, naming the time.
	dir := t.TempDir()
	bad := filepath.Join(dir, "wrong.test.hcl")
	abs, _ := filepath.Abs("../../examples/policy.d/noisy-neighbour.hcl")
	os.WriteFile(bad, []byte(`policies = ["`+abs+`"]
test "expects too early" {
  interval = "5s"
  disk "vm" "vda" { write_iops = "3000x10" }
  host { io_pressure_some_avg10 = "1x10" }
  expect {
    at = "5s"
    rule = "calm-noisy-writers"
    vm = "vm"
    disk = "vda"
    decision = "apply"
  }
}
`), 0o644)
	out.Reset()
	if code := run(context.Background(), []string{"policy", "test", bad}, &out, &errOut); code != exitFailure {
		t.Fatalf("a failing test passed: %s", out.String())
	}
	if !strings.Contains(out.String(), `at 5s: rule calm-noisy-writers on vm/vda: expected apply, got none`) || !strings.Contains(out.String(), "0 passed, 1 failed") {
		t.Errorf("output:\n%s", out.String())
	}
}
