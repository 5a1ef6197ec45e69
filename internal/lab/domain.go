package lab

import (
	"context"
	"encoding/base64"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qtune/qtune/internal/loadgen"
)

// DomainDisk is a virtio disk of a lab domain.
type DomainDisk struct {
	Target string // vda, vdb, ...
	Image  string
	Format string // qcow2 (default) or raw
	Cache  string // none (default), writeback, directsync, unsafe
	// Secret is the UUID of a libvirt secret (DefineSecret): the image is
	// a LUKS qcow2 libvirt opens with its passphrase.
	Secret string
	// StatsIntervals, in seconds, go into the driver's
	// <statistics><statistic interval='N'/> (QEMU's stats-intervals);
	// libvirt releases without the element drop it.
	StatsIntervals []int
}

// DomainSpec describes a TCG domain whose guest runs a workload.
type DomainSpec struct {
	Name     string
	Disks    []DomainDisk
	Workload *loadgen.Params
	MemoryMB int
	// Paused starts the domain with its CPU stopped (virsh start
	// --paused): its disks are there to sample, and it costs no CPU.
	Paused bool
}

// Domain is a running lab domain.
type Domain struct {
	Name string
	// Serial is the serial console log. It is opened for appending, so
	// a migrated domain's log goes on in the same file.
	Serial string
	d      *Libvirtd // where it runs now (MigrateTo moves it)
}

// DefineDomain defines a persistent TCG domain booting the lab's guest and
// starts it.
func (d *Libvirtd) DefineDomain(ctx context.Context, spec DomainSpec) (*Domain, error) {
	kernel, initrd, err := Guest(ctx)
	if err != nil {
		return nil, err
	}
	dom := &Domain{Name: spec.Name, Serial: filepath.Join(d.Dir, spec.Name+"-serial.log"), d: d}
	xmlPath := filepath.Join(d.Dir, spec.Name+".xml")
	if err := os.WriteFile(xmlPath, []byte(domainXML(spec, kernel, initrd, dom.Serial)), 0o644); err != nil {
		return nil, err
	}
	if _, err := d.Virsh(ctx, "define", xmlPath); err != nil {
		return nil, err
	}
	start := []string{"start", spec.Name}
	if spec.Paused {
		start = append(start, "--paused")
	}
	if _, err := d.Virsh(ctx, start...); err != nil {
		return nil, err
	}
	return dom, nil
}

// DefineDomainT is DefineDomain for tests; the domain is destroyed and
// undefined at the test's end.
func (d *Libvirtd) DefineDomainT(t testing.TB, spec DomainSpec) *Domain {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dom, err := d.DefineDomain(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dom.Remove(context.Background()) })
	return dom
}

func domainXML(spec DomainSpec, kernel, initrd, serial string) string {
	mem := spec.MemoryMB
	if mem == 0 {
		mem = 256
	}
	// no_timer_check: on a loaded host a TCG guest's timer can miss the
	// kernel's IO-APIC check, which then panics at boot ("IO-APIC + timer
	// doesn't work!").
	cmdline := "console=ttyS0 panic=-1 quiet loglevel=3 no_timer_check"
	if spec.Workload != nil {
		cmdline += " " + spec.Workload.Cmdline()
	}
	e := html.EscapeString
	var disks strings.Builder
	for _, dk := range spec.Disks {
		format, cache := dk.Format, dk.Cache
		if format == "" {
			format = "qcow2"
		}
		if cache == "" {
			cache = "none"
		}
		source := fmt.Sprintf("<source file='%s'/>", e(dk.Image))
		if dk.Secret != "" {
			source = fmt.Sprintf("<source file='%s'><encryption format='luks'><secret type='passphrase' uuid='%s'/></encryption></source>", e(dk.Image), e(dk.Secret))
		}
		driver := fmt.Sprintf("<driver name='qemu' type='%s' cache='%s'/>", e(format), e(cache))
		if len(dk.StatsIntervals) > 0 {
			var st strings.Builder
			for _, n := range dk.StatsIntervals {
				fmt.Fprintf(&st, "<statistic interval='%d'/>", n)
			}
			driver = fmt.Sprintf("<driver name='qemu' type='%s' cache='%s'><statistics>%s</statistics></driver>", e(format), e(cache), st.String())
		}
		fmt.Fprintf(&disks, `    <disk type='file' device='disk'>
      %s
      %s
      <target dev='%s' bus='virtio'/>
    </disk>
`, driver, source, e(dk.Target))
	}
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
%s    <serial type='file'>
      <source path='%s' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`, e(spec.Name), mem, e(kernel), e(initrd), e(cmdline), disks.String(), e(serial))
}

// WaitSerial waits until the guest's console shows substr on a complete
// line (see completeLines).
func (dom *Domain) WaitSerial(ctx context.Context, substr string) error {
	for {
		b, _ := os.ReadFile(dom.Serial)
		if strings.Contains(completeLines(string(b)), substr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("domain %s: %q not on the serial console: %w\n%s", dom.Name, substr, ctx.Err(), b)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Remove destroys and undefines the domain.
func (dom *Domain) Remove(ctx context.Context) error {
	dom.d.Virsh(ctx, "destroy", dom.Name)
	_, err := dom.d.Virsh(ctx, "undefine", dom.Name)
	return err
}

// DefineSecret defines a volume secret with uuid on the daemon, for the
// image at volume, and sets its value. A private secret's value no
// client can read back; libvirt still hands it to QEMU.
func (d *Libvirtd) DefineSecret(ctx context.Context, uuid, volume string, value []byte, private bool) error {
	priv := "no"
	if private {
		priv = "yes"
	}
	e := html.EscapeString
	doc := fmt.Sprintf("<secret ephemeral='no' private='%s'><uuid>%s</uuid><usage type='volume'><volume>%s</volume></usage></secret>\n", priv, e(uuid), e(volume))
	path := filepath.Join(d.Dir, "secret-"+uuid+".xml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		return err
	}
	if _, err := d.Virsh(ctx, "secret-define", path); err != nil {
		return err
	}
	// A lab key, so on virsh's command line; a real one would go
	// through --file.
	_, err := d.Virsh(ctx, "secret-set-value", uuid, base64.StdEncoding.EncodeToString(value))
	return err
}
