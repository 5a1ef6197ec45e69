package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFleetConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.hcl")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	os.WriteFile(path, []byte(`fleet {
  endpoints     = ["https://e1:2379", "https://e2:2379"]
  lease_ttl     = "10s"
  floor_speed   = "2MiB"
  username      = "qtune"
  password_file = "`+pw+`"
  host          = "hv7"
}
budget "nfs-a" {
  dirs       = ["/srv/nfs-a"]
  max_copies = 1
  max_speed  = "16MiB"
}
budget "ceph" {
  dirs       = ["/ceph", "/mnt/rbd"]
  max_copies = 4
}
`), 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Fleet
	if f == nil || len(f.Endpoints) != 2 || f.LeaseTTL != 10*time.Second || f.FloorSpeed != 2<<20 ||
		f.Username != "qtune" || f.Password != "s3cret" || cfg.FleetHost != "hv7" || len(f.Budgets) != 2 {
		t.Fatalf("%+v host %q", f, cfg.FleetHost)
	}
	if b := f.Budgets[0]; b.Name != "nfs-a" || b.MaxCopies != 1 || b.MaxSpeed != 16<<20 || b.Dirs[0] != "/srv/nfs-a" {
		t.Errorf("budget %+v", b)
	}
	if m := f.Match("/mnt/rbd/pool"); len(m) != 1 || m[0].Name != "ceph" {
		t.Errorf("match %+v", m)
	}

	os.WriteFile(path, []byte(`fleet {
  endpoints = []
  lease_ttl = "1s"
  floor_speed = "fast"
}
budget "nfs-a" {
  dirs       = ["srv"]
  max_copies = 0
  max_speed  = "lots"
}

budget "nfs-a" {
  dirs = ["/x"]
  max_copies = 1
}
`), 0o644)
	_, err = Load(path)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		path + ":1:1: fleet.floor_speed", path + ":1:1: fleet: no etcd endpoints", path + ":1:1: fleet: lease TTL 1s is under 2s",
		path + `:6:1: budget "nfs-a": max_speed`, path + `:6:1: budget "nfs-a": max_copies 0`, path + `:6:1: budget "nfs-a": directory "srv"`,
		path + `:12:1: budget "nfs-a" is defined twice`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	os.WriteFile(path, []byte("budget \"a\" {\n  dirs = [\"/a\"]\n  max_copies = 1\n}\n"), 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path+`:1:1: budget "a" needs a fleet block`) {
		t.Errorf("budget without fleet: %v", err)
	}
	os.WriteFile(path, []byte("fleet {\n  endpoint = [\"x\"]\n}\n"), 0o644)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("unknown fleet setting: %v", err)
	}
}
