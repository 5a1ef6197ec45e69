package facts

import (
	"context"
	"fmt"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
)

// Details is what a report on a VM (qtune doctor) reads beyond its
// disks' samples, as of the last sample.
type Details struct {
	// RunState is the VM's state as QEMU's query-status names it:
	// running, paused, io-error (paused on a failed disk request),
	// shutoff, crashed, suspended, other.
	RunState string
	// Disks are by disk name, as in the samples.
	Disks map[string]DiskDetails
}

// DiskDetails are one disk's settings and error counters beyond its
// sample. Strings are "" when unknown.
type DiskDetails struct {
	// Cache is the disk's cache mode with the guest-visible write cache.
	Cache sample.Cache
	// AIO, Discard and DetectZeroes are the node's settings, QEMU's
	// defaults filled in where they are known to apply.
	AIO, Discard, DetectZeroes string
	// Failed and Invalid count failed and invalid operations so far;
	// known only when ErrorsKnown (no libvirt API reports them).
	Failed, Invalid uint64
	ErrorsKnown     bool
}

// readDetails keeps what a report needs from a plain QEMU VM's sample,
// and its run state (one more call).
func (r *qmpRunner) readDetails(ctx context.Context, vm *qmpVM, disks []sample.Disk, health map[string]qmp.DiskHealth) error {
	st, err := vm.handle.Block.QueryStatus(ctx)
	if err != nil {
		return fmt.Errorf("query-status: %w", err)
	}
	d := Details{RunState: st.Status, Disks: make(map[string]DiskDetails, len(disks))}
	for _, s := range disks {
		h := health[s.Name]
		dd := DiskDetails{Cache: sample.Cache{Writeback: h.Writeback, Direct: s.CacheDirect, NoFlush: s.CacheNoFlush},
			DetectZeroes: h.DetectZeroes, Failed: h.Failed, Invalid: h.Invalid, ErrorsKnown: true}
		// aio is the file node's, discard the format node's; QEMU's
		// defaults hold when the command line names the node but not them.
		dd.AIO = nodeOption(vm.opts, s.Node, "aio", true)
		if vm.opts[s.Node] != nil {
			dd.AIO = orDefault(dd.AIO, "threads")
			dd.Discard = orDefault(nodeOption(vm.opts, s.Node, "discard", false), "ignore")
		}
		d.Disks[s.Name] = dd
	}
	r.idMu.Lock()
	r.details = d
	r.idMu.Unlock()
	return nil
}

// nodeOption is a string option of the node, or of the node's file child.
func nodeOption(opts map[string]qmp.NodeOptions, node, key string, child bool) string {
	o := opts[node]
	if child {
		name, _ := o["file"].(string)
		o = opts[name]
	}
	s, _ := o[key].(string)
	return s
}

// details is what a domain's XML and the last bulk call said of it;
// libvirt's own API reports no failed or invalid operation counters.
func (s *libvirtSource) details(dom string) (Details, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, listed := s.states[dom]
	f := s.facts[dom]
	if !listed || f == nil || !f.ok {
		return Details{}, false
	}
	d := Details{RunState: runState(st), Disks: make(map[string]DiskDetails, len(f.disks))}
	for target, x := range f.disks {
		c, _ := sample.ParseCacheMode(x.Cache)
		// libvirt passes discard, detect-zeroes and aio to QEMU only when
		// the XML sets them: otherwise QEMU's defaults apply (aio is left
		// unknown: libvirt may pick native for cache=none itself).
		d.Disks[target] = DiskDetails{Cache: c, AIO: x.IO,
			Discard: orDefault(x.Discard, "ignore"), DetectZeroes: orDefault(x.DetectZeroes, "off")}
	}
	return d, true
}

// runState names a domain's state as QEMU's query-status does.
func runState(st VMState) string {
	switch st.State {
	case "running":
		return "running"
	case "paused":
		if st.Reason == "ioerror" {
			return "io-error"
		}
		return "paused"
	case "shutoff", "crashed":
		return st.State
	case "pmsuspended":
		return "suspended"
	}
	return "other"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
