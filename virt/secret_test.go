package virt

import "testing"

// A disk's <encryption> is read under <source> (libvirt 5.x on) and
// under <disk> (before), by UUID or by usage.
func TestParseDiskEncryption(t *testing.T) {
	doc := `<domain><devices>
<disk type='file' device='disk'><driver type='qcow2'/>
  <source file='/v/a.qcow2'><encryption format='luks'><secret type='passphrase' uuid='0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f'/></encryption></source>
  <target dev='vda'/></disk>
<disk type='file' device='disk'><driver type='qcow2'/>
  <source file='/v/b.qcow2'/><encryption format='luks'><secret type='passphrase' usage='/v/b.qcow2'/></encryption>
  <target dev='vdb'/></disk>
<disk type='file' device='disk'><driver type='qcow2'/><source file='/v/c.qcow2'/><target dev='vdc'/></disk>
</devices></domain>`
	disks, err := ParseDomainDisks(doc)
	if err != nil || len(disks) != 3 {
		t.Fatalf("%+v %v", disks, err)
	}
	if e := disks[0].Encryption; e == nil || *e != (DiskEncryption{Format: "luks", SecretUUID: "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f"}) {
		t.Fatalf("vda: %+v", e)
	}
	if e := disks[1].Encryption; e == nil || *e != (DiskEncryption{Format: "luks", SecretUsage: "/v/b.qcow2"}) {
		t.Fatalf("vdb: %+v", e)
	}
	if disks[2].Encryption != nil {
		t.Fatalf("vdc: %+v", disks[2].Encryption)
	}
}

func TestSecretUUIDRoundTrip(t *testing.T) {
	const s = "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f"
	u, err := parseUUID(s)
	if err != nil || formatUUID(u) != s {
		t.Fatalf("%s -> %v -> %s", s, err, formatUUID(u))
	}
	if _, err := parseUUID("not-a-uuid"); err == nil {
		t.Fatal("a bad UUID was taken")
	}
}
