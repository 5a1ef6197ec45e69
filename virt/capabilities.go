package virt

import (
	"context"
	"fmt"
	"strings"

	"github.com/digitalocean/go-libvirt"
)

// LibvirtCaps is what a libvirt and its QEMU were found to offer. The
// versions are reported for the operator; what qtune does hangs on what
// the calls return: the bulk stats carry timed block statistics (a
// disk's <driver><statistics>, QEMU's stats-intervals) and latency
// histograms only where libvirt has them and a domain asked for them.
type LibvirtCaps struct {
	Libvirt, QEMU string // "9.0.0", "7.2.0"
	// TimedStats, Histograms: the domains whose bulk block stats carry
	// timed groups, latency histograms.
	TimedStats, Histograms []string
}

// Names lists what was found, for status.
func (c LibvirtCaps) Names() []string {
	out := []string{"libvirt " + c.Libvirt, "qemu " + c.QEMU}
	if len(c.TimedStats) > 0 {
		out = append(out, fmt.Sprintf("timed-block-stats (%d domains)", len(c.TimedStats)))
	} else {
		out = append(out, "no timed-block-stats")
	}
	if len(c.Histograms) > 0 {
		out = append(out, fmt.Sprintf("latency-histograms (%d domains)", len(c.Histograms)))
	} else {
		out = append(out, "no latency-histograms")
	}
	return out
}

// versionString turns libvirt's major*1e6+minor*1e3+micro into text.
func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// Capabilities asks libvirt its version, its QEMU's, and what the active
// domains' bulk block stats carry.
func (v *Libvirt) Capabilities(ctx context.Context) (LibvirtCaps, error) {
	var c LibvirtCaps
	var recs []libvirt.DomainStatsRecord
	err := v.call(ctx, "capabilities", func(l *libvirt.Libvirt) error {
		lib, err := l.ConnectGetLibVersion()
		if err != nil {
			return fmt.Errorf("library version: %w", err)
		}
		hv, err := l.ConnectGetVersion()
		if err != nil {
			return fmt.Errorf("hypervisor version: %w", err)
		}
		c.Libvirt, c.QEMU = versionString(lib), versionString(hv)
		recs, err = l.ConnectGetAllDomainStats(nil, uint32(libvirt.DomainStatsBlock),
			uint32(libvirt.ConnectGetAllDomainsStatsActive|libvirt.ConnectGetAllDomainsStatsNowait))
		return err
	})
	if err != nil {
		return LibvirtCaps{}, err
	}
	for _, r := range recs {
		timed, hist := StatsCarry(r.Params)
		if timed {
			c.TimedStats = append(c.TimedStats, r.Dom.Name)
		}
		if hist {
			c.Histograms = append(c.Histograms, r.Dom.Name)
		}
	}
	return c, nil
}

// StatsCarry reports whether a domain's bulk block stats carry timed
// groups (block.<n>.timed_group.<m>.*) and latency histograms
// (block.<n>...histogram...).
func StatsCarry(params []libvirt.TypedParam) (timed, histograms bool) {
	for _, p := range params {
		if !strings.HasPrefix(p.Field, "block.") {
			continue
		}
		timed = timed || strings.Contains(p.Field, ".timed_group.")
		histograms = histograms || strings.Contains(p.Field, "histogram")
	}
	return timed, histograms
}
