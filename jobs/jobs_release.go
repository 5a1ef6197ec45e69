package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/qtune/qtune/policy"
	"github.com/qtune/qtune/qmp"
	"github.com/qtune/qtune/state"
)

// A finished job lets go of the images it took the disk off: the source
// of a copy that pivoted, the backing files a stream took out of the
// chain. QEMU frees nodes it opened implicitly once nothing uses them,
// but a node given on the command line (-blockdev) or by blockdev-add is
// the monitor's and stays open, its file with it, until blockdev-del —
// so deleting the kept image would free no space until the VM stops.
// qtune deletes such nodes, and only those nothing uses any more; the
// files stay on disk, for the operator to delete.

// releasedPaths are the images j took its disk off, or may have: the
// graph check decides what is really unused.
func releasedPaths(j *state.Job) []string {
	switch {
	case pivots(j):
		if j.Pivoted {
			return []string{j.Source}
		}
		return nil
	case j.Kind == policy.KnobStream:
		for i, p := range j.Chain {
			if p == j.Base {
				return j.Chain[:i]
			}
		}
		return j.Chain
	}
	return nil
}

// maxReleaseRounds bounds the node deletion: each round deletes the
// nodes nothing uses, which frees their children for the next (format
// node, then its file node, then a removed backing layer's nodes).
const maxReleaseRounds = 8

// releaseNodes deletes the named nodes that open one of paths and that
// nothing uses (no device, job, export or other node is their parent),
// and returns their names. A node still in use is left alone.
func releaseNodes(ctx context.Context, b *qmp.Block, paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	var deleted []string
	for round := 0; round < maxReleaseRounds; round++ {
		nodes, err := b.QueryNamedBlockNodes(ctx, true)
		if err != nil {
			return deleted, fmt.Errorf("list nodes: %w", err)
		}
		graph, gerr := b.QueryBlockGraph(ctx)
		n := 0
		for _, nd := range nodes {
			if !want[nd.File] || qmp.IsAutoNodeName(nd.NodeName) {
				continue
			}
			if gerr == nil {
				if parents, found := graph.Parents(nd.NodeName); !found || len(parents) > 0 {
					continue // in use (or not seen): never deleted
				}
			}
			// Without the graph, blockdev-del's own check stands: QEMU
			// refuses a node that has a parent or a device.
			if err := b.BlockdevDel(ctx, nd.NodeName); err != nil {
				if gerr == nil && !notFound(err) {
					return deleted, fmt.Errorf("delete unused node %s (%s): %w", nd.NodeName, nd.File, err)
				}
				continue
			}
			deleted = append(deleted, nd.NodeName)
			n++
		}
		if n == 0 {
			return deleted, nil
		}
	}
	return deleted, nil
}

// pidDriver is a driver that knows the pid of a VM's QEMU (0: unknown).
type pidDriver interface{ QEMUPID(vm string) int }

// keptImages describes the images j left on disk: their size and whether
// QEMU (pid, 0 when unknown) still holds them open.
func keptImages(j *state.Job, pid int) []state.Kept {
	var out []state.Kept
	for _, p := range releasedPaths(j) {
		k := state.Kept{Path: p}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			continue // gone already: nothing kept
		}
		k.Bytes = uint64(st.Blocks) * 512
		if pid > 0 {
			open, err := holdsOpen(pid, p)
			k.Open = open || err != nil // unknown counts as open: no false "free to delete"
		} else {
			k.Open = true
		}
		out = append(out, k)
	}
	return out
}

// holdsOpen reports whether process pid has a file descriptor on path.
func holdsOpen(pid int, path string) (bool, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("open files of %d: %w", pid, err)
	}
	want, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		st, err := os.Stat(filepath.Join(dir, e.Name())) // follows the fd to its file
		if err != nil {
			continue // closed meanwhile, or not a file
		}
		if os.SameFile(st, want) {
			return true, nil
		}
	}
	return false, nil
}

// keep notes what j left on disk, asking the driver for QEMU's pid.
func (m *Manager) keep(j *state.Job) {
	pid := 0
	if d, ok := m.driver.(pidDriver); ok {
		pid = d.QEMUPID(j.VM)
	}
	j.Kept = keptImages(j, pid)
}

// keptNote says what j left on disk and whether it is free to delete.
func keptNote(j *state.Job) string {
	s := ""
	for _, k := range j.Kept {
		s += fmt.Sprintf("; %s (%.1f MiB) is kept", k.Path, float64(k.Bytes)/(1<<20))
		if k.Open {
			s += ", still open in QEMU until the VM stops"
		} else {
			s += ", no longer open: free to delete"
		}
	}
	return s
}
