package qmp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestCapabilitiesOfQEMU72(t *testing.T) {
	b := NewBlock(golden(t))
	c, err := b.QueryCapabilities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Capabilities{Reopen: "blockdev-reopen", LatencyHistograms: true, BlockdevDel: true, BlockGraph: true,
		JobSetSpeed: true, JobDismiss: true, WriteBlockingMirror: true}
	if c != want {
		t.Fatalf("7.2 offers %+v, want %+v", c, want)
	}
	if s := c.String(); !strings.HasPrefix(s, "blockdev-reopen, latency-histograms,") || !strings.HasSuffix(s, "no block-job-change") {
		t.Fatalf("names: %s", s)
	}
}

// A QEMU from before 6.1 has only x-blockdev-reopen, which takes one
// node's options boxed: qtune sends that, and refuses several at once
// rather than change them one by one.
func TestReopenOnAnOldQEMU(t *testing.T) {
	f := &fakeExec{replies: map[string]json.RawMessage{"query-qmp-schema": json.RawMessage(`[
		{"name":"x-blockdev-reopen","meta-type":"command","arg-type":"BlockdevOptions","ret-type":"0"},
		{"name":"blockdev-del","meta-type":"command","arg-type":"x","ret-type":"0"}]`)}, errs: map[string]error{}}
	b := NewBlock(f)
	c, err := b.QueryCapabilities(context.Background())
	if err != nil || c.Reopen != "x-blockdev-reopen" || !c.BlockdevDel || c.LatencyHistograms || c.JobDismiss {
		t.Fatalf("%+v %v", c, err)
	}
	opts := map[string]any{"driver": "qcow2", "node-name": "disk0-fmt", "file": "disk0-file"}
	if err := b.BlockdevReopen(context.Background(), []map[string]any{opts}); err != nil {
		t.Fatal(err)
	}
	last := f.sent[len(f.sent)-1]
	if last.command != "x-blockdev-reopen" || !strings.Contains(string(last.args), `"node-name":"disk0-fmt"`) || strings.Contains(string(last.args), `"options"`) {
		t.Fatalf("sent %s %s", last.command, last.args)
	}
	if err := b.BlockdevReopen(context.Background(), []map[string]any{opts, opts}); err == nil || !strings.Contains(err.Error(), "one node at a time") {
		t.Fatalf("two nodes at once: %v", err)
	}
	b.UseCapabilities(Capabilities{Reopen: "blockdev-reopen"})
	if err := b.BlockdevReopen(context.Background(), []map[string]any{opts, opts}); err != nil {
		t.Fatal(err)
	}
	if last := f.sent[len(f.sent)-1]; last.command != "blockdev-reopen" || !strings.Contains(string(last.args), `"options":[`) {
		t.Fatalf("sent %s %s", last.command, last.args)
	}
}

func TestBlockGraphParents(t *testing.T) {
	var g BlockGraph
	if err := json.Unmarshal([]byte(`{"nodes":[{"id":1,"type":"block-backend","name":"disk0"},{"id":2,"type":"block-driver","name":"new-fmt"},
		{"id":3,"type":"block-driver","name":"old-fmt"},{"id":4,"type":"block-driver","name":"old-file"}],
		"edges":[{"parent":1,"child":2,"name":"root"},{"parent":3,"child":4,"name":"file"}]}`), &g); err != nil {
		t.Fatal(err)
	}
	if p, found := g.Parents("new-fmt"); !found || len(p) != 1 || p[0] != "block-backend disk0" {
		t.Fatalf("new-fmt: %v %v", p, found)
	}
	if p, found := g.Parents("old-fmt"); !found || len(p) != 0 {
		t.Fatalf("old-fmt: %v %v", p, found)
	}
	if p, _ := g.Parents("old-file"); len(p) != 1 {
		t.Fatalf("old-file is used by old-fmt: %v", p)
	}
	if _, found := g.Parents("nothing"); found {
		t.Fatal("found a node that is not there")
	}
}
