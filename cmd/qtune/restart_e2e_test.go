package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qtune/qtune/api"
	"github.com/qtune/qtune/internal/lab"
)

// The host of the libvirtd restart test: as many disks as the
// benchmark's 400-disk host, on sparse raw files (no qemu-img run per
// disk), in domains started paused (no guest boots), and in 4 domains
// of 100 disks rather than the benchmark's 20 of 20: starting 20 took 47 s
// on a loaded 2-core machine, 4 took 27 s. The load that matters for the
// reconnect is the same: 400 disks in every bulk stats answer and in the
// XML read again after it.
const (
	restartDomains        = 4
	restartDisksPerDomain = 100
)

// TestAgentReconnectsToRestartedLibvirtdUnderManyDisks restarts libvirtd
// while the agent samples a host of 400 disks every second: the agent,
// never restarted, reconnects once and samples every disk again.
func TestAgentReconnectsToRestartedLibvirtdUnderManyDisks(t *testing.T) {
	lab.NeedLibvirt(t) // not in parallel: 400 disks a second need libvirtd at full speed
	bin := buildQtune(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := lab.StartLibvirtdT(t)
	start := time.Now()
	manyDiskDomains(t, ctx, d)
	t.Logf("%d paused domains of %d disks up in %v", restartDomains, restartDisksPerDomain, time.Since(start).Round(time.Millisecond))
	a := startAgentWith(t, bin, "", "--interval", "1s", "--disk-checks=false",
		"--libvirt-socket", d.SocketPath(), "--libvirt-pid-dir", filepath.Join(d.Dir, "run", "libvirt", "qemu"))
	const all = restartDomains * restartDisksPerDomain
	a.waitFor(t, time.Minute, "every disk sampled", func(s api.Status) bool { return disksSeen(s) == all })
	pid := a.cmd.Process.Pid

	restarting := time.Now()
	if err := d.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	back := a.waitFor(t, 2*time.Minute, "a reconnect and every disk sampled again", func(s api.Status) bool {
		return s.Reconnects >= 1 && s.Connected && s.LastCycle.After(restarting) && disksSeen(s) == all
	})
	t.Logf("every disk sampled again %v after the restart began", time.Since(restarting).Round(time.Millisecond))
	// A few cycles on: still one reconnect, every disk, the same process.
	later := a.waitFor(t, 30*time.Second, "three more cycles", func(s api.Status) bool {
		return s.LastCycle.After(back.LastCycle.Add(2500 * time.Millisecond))
	})
	if later.Reconnects != 1 || !later.Connected || disksSeen(later) != all {
		t.Errorf("after the restart: %d reconnects (want 1), connected %v, %d of %d disks", later.Reconnects, later.Connected, disksSeen(later), all)
	}
	if v := metricValue(a.metrics(t), "qtune_backend_reconnects_total"); v != 1 {
		t.Errorf("qtune_backend_reconnects_total = %v, want 1", v)
	}
	select {
	case err := <-a.done:
		t.Fatalf("the agent exited: %v", err)
	default:
	}
	if a.cmd.Process.Pid != pid {
		t.Fatal("the agent was restarted")
	}
}

func disksSeen(s api.Status) int {
	n := 0
	for _, vm := range s.VMs {
		n += len(vm.Disks)
	}
	return n
}

// manyDiskDomains defines and starts the test host's domains, paused,
// a few at a time (libvirtd takes several starts at once).
func manyDiskDomains(t *testing.T, ctx context.Context, d *lab.Libvirtd) {
	dir := t.TempDir()
	errs := make(chan error, restartDomains)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := 0; i < restartDomains; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- pausedRawDomain(ctx, d, dir, fmt.Sprintf("many%02d", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// libvirtd's Stop at the test's end destroys them.
}

func pausedRawDomain(ctx context.Context, d *lab.Libvirtd, dir, name string) error {
	var disks []lab.DomainDisk
	for k := 0; k < restartDisksPerDomain; k++ {
		img := filepath.Join(dir, fmt.Sprintf("%s-%d.raw", name, k))
		f, err := os.Create(img)
		if err != nil {
			return err
		}
		err = f.Truncate(1 << 20)
		f.Close()
		if err != nil {
			return err
		}
		disks = append(disks, lab.DomainDisk{Target: "vd" + diskLetters(k), Image: img, Format: "raw"})
	}
	_, err := d.DefineDomain(ctx, lab.DomainSpec{Name: name, MemoryMB: 64, Disks: disks, Paused: true})
	return err
}

// diskLetters names the k-th disk as Linux does: a..z, aa..az, ba...
func diskLetters(k int) string {
	if k < 26 {
		return string(rune('a' + k))
	}
	return diskLetters(k/26-1) + string(rune('a'+k%26))
}
