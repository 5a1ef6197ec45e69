package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/policy"
)

func TestPrintJobs(t *testing.T) {
	jobs := []api.Job{
		{ID: "qtune-mirror-web1-vda-1a2b3c4d", Kind: policy.KnobMirror, Target: api.Target{VM: "web1", Disk: "vda"}, State: api.JobRunning,
			Source: "/slow/web1.qcow2", Dest: "/fast/web1.qcow2", Progress: api.Progress{Offset: 1 << 30, Length: 4 << 30, Rate: 50 << 20, ETA: time.Minute}},
		{ID: "qtune-stream-db-vdb-00ff00ff", Kind: policy.KnobStream, Target: api.Target{VM: "db", Disk: "vdb"}, State: api.JobPlanned, Waiting: "outside the maintenance windows 01:00-05:00"},
		{ID: "qtune-convert-old-vda-12345678", Kind: policy.KnobConvert, State: api.JobFailed, Error: "the job failed: No space left on device"},
		{ID: "qtune-mirror-web2-vda-0a0b0c0d", Kind: policy.KnobMirror, Target: api.Target{VM: "web2", Disk: "vda"}, State: api.JobDone, Pivoted: true,
			Source: "/slow/web2.qcow2", Dest: "/fast/web2.qcow2", Kept: []api.Kept{{Path: "/slow/web2.qcow2", Bytes: 3 << 30}}},
		{ID: "qtune-stream-web3-vda-0a0b0c0e", Kind: policy.KnobStream, Target: api.Target{VM: "web3", Disk: "vda"}, State: api.JobDone,
			Source: "/v/web3.qcow2", Kept: []api.Kept{{Path: "/v/base.qcow2", Bytes: 1 << 20, Open: true}}},
	}
	var b bytes.Buffer
	printJobs(&b, jobs, false, time.Now())
	out := b.String()
	for _, want := range []string{"[######..................]  25.0%", "50.0MiB/s", "1m0s", "/slow/web1.qcow2 -> /fast/web1.qcow2", "waiting: outside the maintenance windows"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "qtune-convert-old") {
		t.Errorf("an ended job listed without --all:\n%s", out)
	}
	b.Reset()
	printJobs(&b, jobs, true, time.Now())
	for _, want := range []string{"error: the job failed: No space left on device", "now on /fast/web2.qcow2",
		"kept: /slow/web2.qcow2 (3.0GiB): no longer open: free to delete",
		"kept: /v/base.qcow2 (1.0MiB): still open in QEMU; deleting it frees its space only once the VM stops"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("--all: missing %q in:\n%s", want, b.String())
		}
	}
}

func TestJobRequestFlags(t *testing.T) {
	r, err := jobRequest([]string{"convert", "web1", "vda"}, "50MiB", "", "", "background", layoutFlags{cluster: "64KiB", extL2: "on"})
	if err != nil || r.Speed != 50<<20 || r.Layout.ClusterSize != 64<<10 || r.Layout.ExtendedL2 == nil || !*r.Layout.ExtendedL2 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := jobRequest([]string{"mirror", "web1", "vda"}, "fast", "/b", "", "sometimes", layoutFlags{extL2: "yes"}); err == nil ||
		!strings.Contains(err.Error(), "--speed") || !strings.Contains(err.Error(), "--target-dir") || !strings.Contains(err.Error(), "--extended-l2") ||
		!strings.Contains(err.Error(), "--base") || !strings.Contains(err.Error(), "--copy-mode") {
		t.Fatalf("every problem at once: %v", err)
	}
}
