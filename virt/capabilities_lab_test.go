package virt_test

import (
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/lab"
	"github.com/qtune/qtune/virt"
)

// What a real libvirtd says it offers: its version and its QEMU's (the
// binary's own --version must agree), and bulk stats without timed
// groups for a domain that asked for none.
func TestRealLibvirtCapabilities(t *testing.T) {
	lab.NeedLibvirt(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	d.WriterDomainT(t, "caps", 0)
	v, err := virt.DialLibvirt(ctx, virt.LibvirtOptions{Socket: d.SocketPath(), MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	c, err := v.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("libvirt offers: %v", c.Names())
	out, err := exec.Command("qemu-system-x86_64", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`version (\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(string(out))
	if m == nil || c.QEMU != m[1]+"."+m[2]+"."+m[3] {
		t.Fatalf("libvirt says QEMU %s, the binary says %q", c.QEMU, out)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(c.Libvirt) || c.Libvirt == "0.0.0" {
		t.Fatalf("libvirt version %q", c.Libvirt)
	}
	if len(c.TimedStats) != 0 || len(c.Histograms) != 0 {
		t.Fatalf("timed stats %v, histograms %v, for a domain that asked for none", c.TimedStats, c.Histograms)
	}
}
