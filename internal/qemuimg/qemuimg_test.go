package qemuimg

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fake writes a script that stands in for qemu-img: it records its
// arguments and answers as given.
func fake(t *testing.T, script string) (Runner, string) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	bin := filepath.Join(dir, "my-qemu-img")
	body := "#!/bin/sh\necho \"$@\" > " + args + "\n" + script + "\n"
	if err := os.WriteFile(bin, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return Runner{Path: bin}, args
}

func TestRunnerUsesTheConfiguredBinary(t *testing.T) {
	r, args := fake(t, `echo '[{"filename":"/a.qcow2","format":"qcow2","virtual-size":1048576,"cluster-size":65536},{"filename":"/base.raw","format":"raw","virtual-size":1048576}]'`)
	chain, err := r.Info(context.Background(), "/a.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || chain[0].Format != "qcow2" || chain[0].ClusterSize != 65536 || chain[1].Filename != "/base.raw" {
		t.Fatalf("chain %+v", chain)
	}
	if got, _ := os.ReadFile(args); strings.TrimSpace(string(got)) != "info -U --backing-chain --output=json /a.qcow2" {
		t.Fatalf("args %q", got)
	}
	if err := r.Create(context.Background(), "/new.qcow2", "qcow2", []string{"cluster_size=65536", "preallocation=metadata"}, 1<<30); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(args); strings.TrimSpace(string(got)) != "create -q -f qcow2 -o cluster_size=65536,preallocation=metadata /new.qcow2 1073741824" {
		t.Fatalf("args %q", got)
	}
}

func TestRunnerFailureSaysWhy(t *testing.T) {
	r, _ := fake(t, `echo "Could not open '/x': No such file" >&2; exit 1`)
	_, err := r.Info(context.Background(), "/x")
	if err == nil || !strings.Contains(err.Error(), "No such file") || !strings.Contains(err.Error(), "qemu-img info") {
		t.Fatalf("err = %v", err)
	}
	if _, err := (Runner{Path: filepath.Join(t.TempDir(), "none")}).Run(context.Background(), "--version"); err == nil {
		t.Fatal("a missing binary ran")
	}
}

// The key of an encrypted image reaches qemu-img on fd 3, never in its
// arguments.
func TestCreateLUKSPassesTheKeyThroughAPipe(t *testing.T) {
	r, args := fake(t, `cat /dev/fd/3 > "$(dirname "$0")/key"`)
	key := []byte("s3cret passphrase")
	if err := r.CreateLUKS(context.Background(), "/new.qcow2", []string{"cluster_size=131072"}, 1<<30, key); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(args)
	want := "create -q --object secret,id=qtkey,file=/dev/fd/3 -f qcow2 -o encrypt.format=luks,encrypt.key-secret=qtkey,cluster_size=131072 /new.qcow2 1073741824"
	if strings.TrimSpace(string(got)) != want {
		t.Fatalf("args %q", got)
	}
	if read, _ := os.ReadFile(filepath.Join(filepath.Dir(r.Path), "key")); string(read) != string(key) {
		t.Fatalf("qemu-img read the key %q", read)
	}
}
