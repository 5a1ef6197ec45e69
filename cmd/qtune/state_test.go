package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/storetest"
	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/tuning"
)

func TestStateCheckAndExport(t *testing.T) {
	good := t.TempDir()
	s, err := tuning.OpenStore(good)
	if err != nil {
		t.Fatal(err)
	}
	s.Append(&tuning.Record{At: time.Unix(1, 0), Target: tuning.Target{VM: "a", Disk: "vda"}, Knob: policy.KnobThrottle, Result: tuning.ResultApplied})
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
	var exp tuning.StoreExport
	if err := json.Unmarshal(out.Bytes(), &exp); err != nil {
		t.Fatal(err)
	}
	var r tuning.Record
	if len(exp.Buckets["log"]) != 1 || json.Unmarshal(exp.Buckets["log"][0].Value, &r) != nil || r.VM != "a" || r.Result != tuning.ResultApplied {
		t.Fatalf("export: %s", out.String())
	}

	bad := t.TempDir()
	storetest.Corrupt(t, bad)
	out.Reset()
	if code := run(context.Background(), []string{"state", "check", "--state-dir", bad}, &out, &errOut); code != exitFailure || !strings.Contains(out.String(), "consistency check") {
		t.Fatalf("check of a corrupt store: exit %d, %s", code, out.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"state", "export", "--state-dir", bad}, &out, &errOut); code != exitFailure || !strings.Contains(errOut.String(), "consistency check") {
		t.Fatalf("export of a corrupt store: exit %d, %s", code, errOut.String())
	}
}
