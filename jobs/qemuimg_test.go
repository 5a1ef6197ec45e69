package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qtune/qtune/internal/qemuimg"
	"github.com/qtune/qtune/policy"
)

// A copy's target is made by the qemu-img the agent is configured with,
// with the layout asked for.
func TestCreateImageRunsTheConfiguredQemuImg(t *testing.T) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	bin := filepath.Join(dir, "site-qemu-img")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" > "+args+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := NewManager(newFakeJobs(), nil, Options{QemuImg: qemuimg.Runner{Path: bin}})
	x := true
	l := policy.Layout{Format: "qcow2", ClusterSize: 65536, ExtendedL2: &x}
	if err := m.o.CreateImage(context.Background(), "/fast/a.qcow2", l, 1<<30); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(args)
	if want := "create -q -f qcow2 -o cluster_size=65536,extended_l2=on /fast/a.qcow2 1073741824"; strings.TrimSpace(string(got)) != want {
		t.Fatalf("ran %q, want %q", got, want)
	}
}
