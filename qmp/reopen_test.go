package qmp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// argv as libvirt 9.0 starts a qcow2 disk over one backing layer.
var libvirtArgv = []string{
	"/usr/bin/qemu-system-x86_64", "-name", "guest=t1",
	"-blockdev", `{"driver":"file","filename":"/var/lib/libvirt/images/base.qcow2","node-name":"libvirt-2-storage","auto-read-only":true,"discard":"unmap"}`,
	"-blockdev", `{"node-name":"libvirt-2-format","read-only":true,"driver":"qcow2","file":"libvirt-2-storage","backing":null}`,
	"-blockdev", `{"driver":"file","filename":"/var/lib/libvirt/images/t1.qcow2","node-name":"libvirt-1-storage","auto-read-only":true,"discard":"unmap","cache":{"direct":true,"no-flush":false},"aio":"native"}`,
	"-blockdev", `{"node-name":"libvirt-1-format","read-only":false,"cache":{"direct":true,"no-flush":false},"driver":"qcow2","file":"libvirt-1-storage","backing":"libvirt-2-format","l2-cache-size":4194304}`,
	"-device", "virtio-blk-pci,drive=libvirt-1-format,id=virtio-disk0",
}

func TestParseBlockdevArgs(t *testing.T) {
	opts, err := ParseBlockdevArgs(libvirtArgv)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 4 {
		t.Fatalf("%d nodes", len(opts))
	}
	kv, err := ParseBlockdevArgs([]string{"-blockdev", "driver=file,filename=x,node-name=f"})
	if err != nil || kv["f"]["filename"] != "x" {
		t.Fatalf("key=value form: %v %v", kv, err)
	}
	_, err = ParseBlockdevArgs([]string{"-blockdev", "driver=file,filename=x,node-name=f,x-unknown=1"})
	if !errors.Is(err, ErrOptionsUnknown) || !strings.Contains(err.Error(), "x-unknown") {
		t.Fatalf("unknown key=value option: %v", err)
	}
}

func TestReopenOptionsKeepsEverythingElse(t *testing.T) {
	opts, _ := ParseBlockdevArgs(libvirtArgv)
	got, err := ReopenOptions(opts, "libvirt-1-format", map[string]any{"l2-cache-size": 8 << 20, "cache-clean-interval": 600})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"backing":"libvirt-2-format","cache":{"direct":true,"no-flush":false},"cache-clean-interval":600,"driver":"qcow2","file":"libvirt-1-storage","l2-cache-size":8388608,"node-name":"libvirt-1-format","read-only":false}`
	if string(b) != want {
		t.Errorf("reopen options\n got %s\nwant %s", b, want)
	}
	if opts["libvirt-1-format"]["l2-cache-size"].(json.Number) != "4194304" {
		t.Error("the recorded options were modified")
	}
	file, err := ReopenOptions(opts, "libvirt-1-storage", map[string]any{"cache.direct": false})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(file)
	if !strings.Contains(string(b), `"aio":"native"`) || !strings.Contains(string(b), `"cache":{"direct":false,"no-flush":false}`) {
		t.Errorf("file node reopen: %s", b)
	}
}

func TestReopenOptionsRefuses(t *testing.T) {
	opts, _ := ParseBlockdevArgs(libvirtArgv)
	implicit, _ := ParseBlockdevArgs([]string{
		"-blockdev", `{"driver":"file","filename":"/x.qcow2","node-name":"f"}`,
		"-blockdev", `{"driver":"qcow2","file":"f","node-name":"q"}`,
	})
	orphan, _ := ParseBlockdevArgs([]string{"-blockdev", `{"driver":"qcow2","file":"gone","node-name":"q","backing":null}`})
	tests := []struct {
		name    string
		opts    map[string]NodeOptions
		node    string
		changes map[string]any
		want    error
		msg     string
	}{
		{"auto node", opts, "#block123", nil, ErrAutoNode, "started with -blockdev and an explicit node-name"},
		{"unknown node", opts, "libvirt-9-format", nil, ErrOptionsUnknown, "added later by blockdev-add"},
		{"implicit backing chain", implicit, "q", map[string]any{"l2-cache-size": 1}, ErrOptionsUnknown, "opened implicitly"},
		{"unknown child", orphan, "q", nil, ErrOptionsUnknown, "child file=gone"},
		{"backing change", opts, "libvirt-1-format", map[string]any{"backing": nil}, nil, `"backing" cannot be changed`},
		{"aio change", opts, "libvirt-1-storage", map[string]any{"aio": "threads"}, nil, `"aio" cannot be changed`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReopenOptions(tc.opts, tc.node, tc.changes)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestDiffNodes(t *testing.T) {
	before := []BlockDeviceInfo{{NodeName: "a", Driver: "qcow2", Cache: Cache{Direct: true}, Image: &ImageInfo{ActualSize: 1}}, {NodeName: "b"}}
	after := []BlockDeviceInfo{{NodeName: "a", Driver: "qcow2", Cache: Cache{Direct: false}, Image: &ImageInfo{ActualSize: 99}}, {NodeName: "c"}}
	got := DiffNodes(before, after, "a.cache.direct")
	want := []string{"node b vanished", "node c appeared"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if d := DiffNodes(before, after); len(d) != 3 || !strings.Contains(d[0], "a.cache.direct: true -> false") {
		t.Errorf("unallowed change not reported: %q", d)
	}
	// A qcow2 file grows while the guest writes: its file node's size
	// moves, a format node's size is the guest's and does not.
	before = []BlockDeviceInfo{{NodeName: "f", Driver: "file", Image: &ImageInfo{VirtualSize: 1 << 20}},
		{NodeName: "q", Driver: "qcow2", Image: &ImageInfo{VirtualSize: 64 << 20}}}
	after = []BlockDeviceInfo{{NodeName: "f", Driver: "file", Image: &ImageInfo{VirtualSize: 2 << 20}},
		{NodeName: "q", Driver: "qcow2", Image: &ImageInfo{VirtualSize: 128 << 20}}}
	if d := DiffNodes(before, after); len(d) != 1 || !strings.HasPrefix(d[0], "q.image.virtual-size") {
		t.Errorf("sizes: %q; want only the format node's resize", d)
	}
}
