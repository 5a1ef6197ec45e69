package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/state"
	"github.com/qtune/qtune/state/statetest"
)

func TestStateCheckAndExport(t *testing.T) {
	good := t.TempDir()
	s, err := state.OpenStore(good)
	if err != nil {
		t.Fatal(err)
	}
	s.Append(&state.Record{At: time.Unix(1, 0), Target: state.Target{VM: "a", Disk: "vda"}, Knob: policy.KnobThrottle, Result: state.ResultApplied})
	// Held by a running agent: refused, not read under its feet.
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"state", "check", "--state-dir", good}, &out, &errOut); code != exitFailure || !strings.Contains(errOut.String(), "stop the agent") {
		t.Fatalf("check of a held store: exit %d, %s", code, errOut.String())
	}
	s.Close()
	out.Reset()
	if code := run(context.Background(), []string{"state", "check", "--state-dir", good}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), ": ok") {
		t.Fatalf("check of a good store: exit %d, %s", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"state", "export", "--state-dir", good}, &out, &errOut); code != exitOK {
		t.Fatalf("export: exit %d, %s", code, errOut.String())
	}
	var exp state.StoreExport
	if err := json.Unmarshal(out.Bytes(), &exp); err != nil {
		t.Fatal(err)
	}
	var r state.Record
	if len(exp.Buckets["log"]) != 1 || json.Unmarshal(exp.Buckets["log"][0].Value, &r) != nil || r.VM != "a" || r.Result != state.ResultApplied {
		t.Fatalf("export: %s", out.String())
	}

	// Round trip into a new store; a second import over it is refused.
	dump := filepath.Join(t.TempDir(), "dump.json")
	os.WriteFile(dump, out.Bytes(), 0o600)
	restored := t.TempDir()
	out.Reset()
	if code := run(context.Background(), []string{"state", "import", "--state-dir", restored, dump}, &out, &errOut); code != exitOK {
		t.Fatalf("import: exit %d, %s", code, errOut.String())
	}
	rs, err := state.OpenStore(restored)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := rs.Records(10)
	rs.Close()
	if len(recs) != 1 || recs[0].VM != "a" {
		t.Fatalf("restored log %+v", recs)
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"state", "import", "--state-dir", restored, dump}, &out, &errOut); code != exitFailure || !strings.Contains(errOut.String(), "not empty") {
		t.Fatalf("import over a store with records: exit %d, %s", code, errOut.String())
	}
	// An empty store held by a running agent: refused all the same.
	heldDir := t.TempDir()
	held, err := state.OpenStore(heldDir)
	if err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	code := run(context.Background(), []string{"state", "import", "--state-dir", heldDir, dump}, &out, &errOut)
	held.Close()
	if code != exitFailure || !strings.Contains(errOut.String(), "locked") {
		t.Fatalf("import into a held store: exit %d, %s", code, errOut.String())
	}
	// Invalid content: nothing is written.
	os.WriteFile(dump, []byte(`{"buckets":{"owned":[{"key":"eA==","value":{"knob":"throttle"}}]}}`), 0o600)
	empty := t.TempDir()
	errOut.Reset()
	if code := run(context.Background(), []string{"state", "import", "--state-dir", empty, dump}, &out, &errOut); code != exitFailure || !strings.Contains(errOut.String(), "owned[0]") {
		t.Fatalf("import of an invalid dump: exit %d, %s", code, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(empty, "state.db")); err == nil {
		t.Error("an invalid import created a store")
	}

	bad := t.TempDir()
	statetest.Corrupt(t, bad)
	out.Reset()
	if code := run(context.Background(), []string{"state", "check", "--state-dir", bad}, &out, &errOut); code != exitFailure || !strings.Contains(out.String(), "consistency check") {
		t.Fatalf("check of a corrupt store: exit %d, %s", code, out.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"state", "export", "--state-dir", bad}, &out, &errOut); code != exitFailure || !strings.Contains(errOut.String(), "consistency check") {
		t.Fatalf("export of a corrupt store: exit %d, %s", code, errOut.String())
	}
}
