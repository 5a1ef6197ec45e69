package qmp_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/qmp"
)

// blockdevForms is one disk written in both -blockdev syntaxes QEMU
// accepts. The image name holds a comma, so the key=value form needs
// QEMU's ",," escape.
func blockdevForms(image string) map[string][]string {
	esc := strings.ReplaceAll(image, ",", ",,")
	file, _ := json.Marshal(map[string]any{"driver": "file", "filename": image, "node-name": "disk0-file",
		"auto-read-only": true, "discard": "unmap", "aio": "threads",
		"cache": map[string]bool{"direct": true, "no-flush": false}})
	return map[string][]string{
		"json": {
			"-blockdev", string(file),
			"-blockdev", `{"driver":"qcow2","file":"disk0-file","node-name":"disk0-fmt","read-only":false,"discard":"unmap","cache":{"direct":true,"no-flush":false},"backing":null,"l2-cache-size":262144}`,
		},
		"keyval": {
			"-blockdev", "driver=file,filename=" + esc + ",node-name=disk0-file,auto-read-only=on,discard=unmap,aio=threads,cache.direct=on,cache.no-flush=off",
			"-blockdev", "driver=qcow2,file=disk0-file,node-name=disk0-fmt,read-only=off,discard=unmap,cache.direct=on,cache.no-flush=off,backing=,l2-cache-size=262144",
		},
	}
}

// TestRealBlockdevSyntaxes starts the same disk once per syntax: QEMU must
// report the same nodes for both, qtune must read the same options from
// both command lines, and a cache-mode reopen built from each must switch
// O_DIRECT on QEMU's file descriptors and change nothing else.
func TestRealBlockdevSyntaxes(t *testing.T) {
	lab.NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	image := filepath.Join(t.TempDir(), "a,b.qcow2")
	if err := lab.CreateImage(ctx, image, "qcow2", 64<<20, lab.ImageOpts{}); err != nil {
		t.Fatal(err)
	}
	forms := blockdevForms(image)
	nodes := map[string][]qmp.BlockDeviceInfo{}
	parsed := map[string]string{}
	for _, syntax := range []string{"json", "keyval"} {
		extra := append(forms[syntax], "-device", "virtio-blk-pci,drive=disk0-fmt,id=disk0")
		vm := lab.StartVMT(t, lab.VMConfig{Name: "syntax-" + syntax, Paused: true, Extra: extra})
		_, b := connect(t, vm)
		opts, err := qmp.CommandLineBlockdevs(vm.PID())
		if err != nil {
			t.Fatalf("%s: %v", syntax, err)
		}
		raw, _ := json.Marshal(opts)
		parsed[syntax] = string(raw)
		if nodes[syntax], err = b.QueryNamedBlockNodes(ctx, true); err != nil {
			t.Fatal(err)
		}
		reopenCacheDirect(ctx, t, b, vm, opts, image, nodes[syntax])
		if err := vm.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if d := qmp.DiffNodes(nodes["json"], nodes["keyval"]); len(d) != 0 {
		t.Errorf("QEMU opened the two syntaxes differently:\n%s", strings.Join(d, "\n"))
	}
	if parsed["json"] != parsed["keyval"] {
		t.Errorf("qtune read the two syntaxes differently:\n json   %s\n keyval %s", parsed["json"], parsed["keyval"])
	}
}

func reopenCacheDirect(ctx context.Context, t *testing.T, b *qmp.Block, vm *lab.VM, opts map[string]qmp.NodeOptions, image string, before []qmp.BlockDeviceInfo) {
	t.Helper()
	if !allEqual(lab.ODirectT(t, vm.PID(), image), true) {
		t.Fatalf("%s: image not opened O_DIRECT at start", vm.Name)
	}
	fileOpts, err := qmp.ReopenOptions(opts, "disk0-file", map[string]any{"cache.direct": false})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.BlockdevReopen(ctx, []map[string]any{fileOpts}); err != nil {
		t.Fatalf("%s: %v", vm.Name, err)
	}
	if got := lab.ODirectT(t, vm.PID(), image); !allEqual(got, false) {
		t.Errorf("%s: O_DIRECT after cache.direct=off = %v", vm.Name, got)
	}
	after, _ := b.QueryNamedBlockNodes(ctx, true)
	if d := qmp.DiffNodes(before, after, "disk0-file.cache.direct"); len(d) != 0 {
		t.Errorf("%s: cache.direct reopen changed other things:\n%s", vm.Name, strings.Join(d, "\n"))
	}
}
