package tuning

import (
	"strings"
	"testing"
)

const domDoc = `<domain type='qemu'>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/img/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2"><metadata_cache><max_size unit='KiB'>512</max_size></metadata_cache></driver>
      <source file="/img/b.qcow2"/>
      <target dev="vdb" bus="virtio"/>
    </disk>
  </devices>
</domain>`

func TestEditDiskDriver(t *testing.T) {
	out, err := editDiskDriver(domDoc, "vda", func(d string) string { return setMetadataCache(setAttr(d, "cache", "writeback"), 8<<20) })
	if err != nil {
		t.Fatal(err)
	}
	want := `<driver name='qemu' type='qcow2' cache='writeback'><metadata_cache><max_size unit='bytes'>8388608</max_size></metadata_cache></driver>`
	if !strings.Contains(out, want) {
		t.Errorf("vda driver not edited:\n%s", out)
	}
	if !strings.Contains(out, `<max_size unit='KiB'>512</max_size>`) {
		t.Errorf("vdb was touched:\n%s", out)
	}
	out, err = editDiskDriver(domDoc, "vdb", func(d string) string { return setMetadataCache(setAttr(d, "cache", "none"), 0) })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `<driver name="qemu" type="qcow2" cache='none'/>`) {
		t.Errorf("vdb:\n%s", out)
	}
	if _, err := editDiskDriver(domDoc, "vdz", func(d string) string { return d }); err == nil {
		t.Error("missing disk not reported")
	}
}

func TestRepointDisk(t *testing.T) {
	doc := `<domain><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/><source file='/a/old.qcow2' index='1'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/a/other.qcow2'/><target dev='vdb' bus='virtio'/></disk>
</devices></domain>`
	out, err := RepointDisk(doc, "vda", "/a/old.qcow2", "/fast/new.raw", "raw")
	if err != nil {
		t.Fatal(err)
	}
	want := `<driver name='qemu' type='raw' cache='none'/><source file='/fast/new.raw' index='1'/><target dev='vda'`
	if !strings.Contains(out, want) || !strings.Contains(out, "/a/other.qcow2") {
		t.Fatalf("repointed:\n%s", out)
	}
	if same, _ := RepointDisk(doc, "vda", "/a/somewhere-else.qcow2", "/x", "raw"); same != doc {
		t.Fatal("a definition someone changed was edited")
	}
}
