package lab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A flavour asked for but not built, or one the lab does not know, must
// stop the gate: under QTUNE_LAB=require the tests would otherwise run on
// the system's QEMU and pass for the wrong version.
func TestFlavourMissing(t *testing.T) {
	t.Setenv("QTUNE_LAB_CACHE", t.TempDir())
	t.Setenv(FlavourEnv, "10")
	why := flavourMissing()
	if !strings.Contains(why, "not built") || !strings.Contains(why, "make lab-flavour-10") {
		t.Errorf("flavour 10 without its root: %q", why)
	}
	t.Setenv(FlavourEnv, "8")
	if why := flavourMissing(); !strings.Contains(why, "unknown lab flavour") {
		t.Errorf("flavour 8: %q", why)
	}
	t.Setenv(FlavourEnv, "")
	if why := flavourMissing(); why != "" {
		t.Errorf("system flavour: %q", why)
	}
}

func TestFlavourMounts(t *testing.T) {
	t.Setenv("QTUNE_LAB_CACHE", "/var/cache/lab")
	got, err := flavourMounts("/r")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"mount --rbind \"/dev\" \"/r/dev\"\n",
		"mount --bind \"/proc\" \"/r/proc\"\n",
		"mount --rbind \"/tmp\" \"/r/tmp\"\n",
		"mount --bind \"/var/cache/lab\" \"/r/var/cache/lab\"\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("mounts lack %q:\n%s", want, got)
		}
	}
}

// TestVersions prints what the lab runs on, and checks that a flavour
// runs the versions it is named after.
func TestVersions(t *testing.T) {
	NeedQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := Versions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(v)
	if v.QEMU == "" {
		t.Fatalf("no QEMU version: %+v", v)
	}
	if Flavour() == "10" && (!strings.HasPrefix(v.QEMU, "10.0.") || !strings.HasPrefix(v.Libvirt, "11.3.")) {
		t.Errorf("flavour 10 runs %s", v)
	}
}
