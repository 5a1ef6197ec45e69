package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// ErrAutoNode is returned for nodes QEMU named itself ("#block123"):
// their options cannot be known, so they cannot be reopened safely.
var ErrAutoNode = errors.New("qmp: auto-named node")

// Block is the typed QEMU 7.2 block API over any Executor: a socket Conn
// or a libvirt passthrough monitor.
type Block struct {
	ex Executor

	mu        sync.Mutex
	reopenCmd string // from the schema (UseCapabilities); "" until known
}

// UseCapabilities has b send the commands c says this QEMU has.
func (b *Block) UseCapabilities(c Capabilities) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reopenCmd = c.Reopen
}

// NewBlock wraps ex.
func NewBlock(ex Executor) *Block { return &Block{ex: ex} }

// call runs command and decodes its return value into out (when not nil).
func (b *Block) call(ctx context.Context, command string, args, out any) error {
	ret, err := b.ex.Execute(ctx, command, args)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(ret, out); err != nil {
		return fmt.Errorf("qmp %s: decode reply: %w", command, err)
	}
	return nil
}

// Call runs any command and decodes its return value into out (when not
// nil): for a knob kind whose commands have no typed method here.
func (b *Block) Call(ctx context.Context, command string, args, out any) error {
	return b.call(ctx, command, args, out)
}

// IsAutoNodeName reports whether QEMU generated the node name: -drive
// disks and nodes opened implicitly (an unnamed backing chain) get
// "#blockNNN".
func IsAutoNodeName(name string) bool { return strings.HasPrefix(name, "#") }

// DiskID names a disk for the commands that take "id" or "device": the
// QOM path of the device model for -blockdev disks (libvirt VMs), the
// drive name for old -drive disks.
type DiskID struct {
	QOMPath string // e.g. /machine/peripheral/disk0/virtio-backend
	Device  string // -drive name; empty for -blockdev disks
}

func (d DiskID) String() string {
	if d.QOMPath != "" {
		return d.QOMPath
	}
	return d.Device
}

// args fills the "id" or "device" argument into m.
func (d DiskID) args(m map[string]any) error {
	switch {
	case d.QOMPath != "":
		m["id"] = d.QOMPath
	case d.Device != "":
		m["device"] = d.Device
	default:
		return errors.New("qmp: disk has neither QOM path nor device name")
	}
	return nil
}

// ShortID is the device id within a QOM path
// ("/machine/peripheral/disk0/virtio-backend" -> "disk0"). A device
// without an id of its own (-drive if=virtio,id=X sits under
// /machine/peripheral-anon/) is named by its drive, X, which is what
// the SRE wrote; only with neither is it the QOM path.
func (d DiskID) ShortID() string {
	if p, ok := strings.CutPrefix(d.QOMPath, "/machine/peripheral/"); ok {
		if i := strings.IndexByte(p, '/'); i > 0 {
			return p[:i]
		}
	}
	if d.Device != "" {
		return d.Device
	}
	return d.QOMPath
}

// QueryVersion returns QEMU's version.
func (b *Block) QueryVersion(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	err := b.call(ctx, "query-version", nil, &v)
	v.QEMU.Package = v.Package
	return v, err
}

// QueryBlock lists the block devices.
func (b *Block) QueryBlock(ctx context.Context) ([]BlockInfo, error) {
	var out []BlockInfo
	return out, b.call(ctx, "query-block", nil, &out)
}

// QueryBlockstats returns the counters of every device; with nodes, of
// every named node instead (then without device or qdev).
func (b *Block) QueryBlockstats(ctx context.Context, nodes bool) ([]BlockStats, error) {
	var out []BlockStats
	var args any
	if nodes {
		args = map[string]bool{"query-nodes": true}
	}
	return out, b.call(ctx, "query-blockstats", args, &out)
}

// QueryNamedBlockNodes lists every node; flat leaves out the backing image
// trees (the nodes are listed anyway).
func (b *Block) QueryNamedBlockNodes(ctx context.Context, flat bool) ([]BlockDeviceInfo, error) {
	var out []BlockDeviceInfo
	return out, b.call(ctx, "query-named-block-nodes", map[string]bool{"flat": flat}, &out)
}

// SetIOThrottle sets a disk's limits. All six base values are always sent
// (QEMU requires them); all zero turns throttling off.
func (b *Block) SetIOThrottle(ctx context.Context, disk DiskID, t IOThrottle) error {
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	if err := disk.args(m); err != nil {
		return err
	}
	return b.call(ctx, "block_set_io_throttle", m, nil)
}

// Histogram boundaries for block-latency-histogram-set, in ns. A nil
// field is left out; All applies to every kind not given its own.
type HistogramBoundaries struct {
	All, Read, Write, Flush []uint64
}

// SetLatencyHistogram enables (or with all fields nil, disables) latency
// histograms of a -blockdev disk, which takes its QOM path.
func (b *Block) SetLatencyHistogram(ctx context.Context, disk DiskID, h HistogramBoundaries) error {
	// The command's "id" is the QOM path, or the drive name of a -drive disk.
	id := disk.String()
	if id == "" {
		return errors.New("qmp: disk has neither QOM path nor device name")
	}
	m := map[string]any{"id": id}
	for k, v := range map[string][]uint64{
		"boundaries": h.All, "boundaries-read": h.Read, "boundaries-write": h.Write, "boundaries-flush": h.Flush,
	} {
		if v != nil {
			m[k] = v
		}
	}
	return b.call(ctx, "block-latency-histogram-set", m, nil)
}

// BlockdevReopen reopens nodes with new options. Each entry must be a
// node's FULL option set: QEMU resets whatever is left out (see Reopen
// in reopen.go, which builds them).
func (b *Block) BlockdevReopen(ctx context.Context, options []map[string]any) error {
	for _, o := range options {
		if n, _ := o["node-name"].(string); n == "" || IsAutoNodeName(n) {
			return fmt.Errorf("blockdev-reopen of node %q: %w", n, ErrAutoNode)
		}
	}
	b.mu.Lock()
	cmd := b.reopenCmd
	b.mu.Unlock()
	if cmd == "x-blockdev-reopen" {
		// Before 6.1 the command took one node's options, boxed: one
		// node per call, so several at once could change half of them.
		if len(options) != 1 {
			return fmt.Errorf("this QEMU reopens one node at a time (x-blockdev-reopen), %d asked for at once", len(options))
		}
		return b.call(ctx, cmd, options[0], nil)
	}
	return b.call(ctx, "blockdev-reopen", map[string]any{"options": options}, nil)
}

// BlockdevAdd adds a node from its options.
func (b *Block) BlockdevAdd(ctx context.Context, options map[string]any) error {
	return b.call(ctx, "blockdev-add", options, nil)
}

// BlockdevDel removes a node nothing uses.
func (b *Block) BlockdevDel(ctx context.Context, node string) error {
	return b.call(ctx, "blockdev-del", map[string]string{"node-name": node}, nil)
}
