package qmp

import (
	"strings"
	"testing"
)

func TestNodeFilename(t *testing.T) {
	for _, c := range []struct {
		name, path, secret, err string
	}{
		{name: "/var/lib/img/a.qcow2", path: "/var/lib/img/a.qcow2"},
		// What QEMU 7.2 reports for a LUKS qcow2 opened with -blockdev.
		{name: `json:{"encrypt.key-secret": "sec0", "driver": "qcow2", "file": {"driver": "file", "filename": "/tmp/x/enc.qcow2"}}`,
			path: "/tmp/x/enc.qcow2", secret: "sec0"},
		{name: `json:{"offset": 1048576, "driver": "raw", "size": 33554432, "file": {"driver": "file", "filename": "/tmp/x/r.raw"}}`,
			path: "/tmp/x/r.raw"},
		// Dotted child options, and a filter between format and file.
		{name: `json:{"driver": "qcow2", "file.driver": "file", "file.filename": "/d/a b,c.qcow2"}`, path: "/d/a b,c.qcow2"},
		{name: `json:{"driver": "raw", "file": {"driver": "copy-on-read", "file.driver": "host_device", "file.filename": "/dev/vdb"}}`, path: "/dev/vdb"},
		{name: `json:{"driver": "luks", "key-secret": "s1", "file": {"driver": "file", "filename": "/e.luks"}}`, path: "/e.luks", secret: "s1"},
		{name: `json:{"driver": "qcow2", "encrypt": {"format": "luks", "key-secret": "k"}, "file": {"driver": "file", "filename": "/n.qcow2"}}`, path: "/n.qcow2", secret: "k"},
		{name: `json:{"driver": "raw", "file": {"driver": "nbd", "server": {"type": "inet", "host": "h"}}}`, err: "the nbd node has no file"},
		{name: `json:{"driver": "raw", "file": "f0"}`, err: `its file is node "f0"`},
		{name: `json:{"driver": "raw", "file": {"driver": "file", "filename": "/a"}, "file.filename": "/b"}`, err: "given twice"},
		{name: `json:{"driver": "raw", "file": 3, "file.filename": "/b"}`, err: `key "file`}, // either order
		{name: `json:{"driver"`, err: "node filename json:"},
	} {
		path, opts, err := NodeFilename(c.name)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one with %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || path != c.path {
			t.Errorf("%s: %q %v, want %q", c.name, path, err, c.path)
		}
		if s := KeySecret(opts); s != c.secret {
			t.Errorf("%s: key secret %q, want %q", c.name, s, c.secret)
		}
	}
	if p := ImagePath(`json:{"driver"`); p != `json:{"driver"` {
		t.Errorf("ImagePath of a bad name: %q", p)
	}
}

// The sampler reports a json: node's image file, which the agent's host
// statistics, doctor's live mode and facts open.
func TestDiskFromInfoJSONFilename(t *testing.T) {
	name := `json:{"encrypt.key-secret": "sec0", "driver": "qcow2", "file": {"driver": "file", "filename": "/v/enc.qcow2"}}`
	bi := BlockInfo{Device: "", QDev: "/machine/peripheral/disk0/virtio-backend",
		Inserted: &BlockDeviceInfo{File: name, NodeName: "disk0-fmt", Driver: "qcow2", Encrypted: true,
			Image: &ImageInfo{Filename: name, Format: "qcow2", VirtualSize: 64 << 20, ClusterSize: 65536}}}
	if d := diskFromInfo("vm", bi, nil); d.Path != "/v/enc.qcow2" {
		t.Fatalf("path %q", d.Path)
	}
	bi.Inserted.Image = nil
	if d := diskFromInfo("vm", bi, nil); d.Path != "/v/enc.qcow2" {
		t.Fatalf("path without image info %q", d.Path)
	}
}
