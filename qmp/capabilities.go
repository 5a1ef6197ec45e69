package qmp

import (
	"context"
	"fmt"
	"strings"
)

// Capabilities is what qtune needs to know a QEMU can do, read from its
// QMP schema rather than guessed from its version: distributions
// backport commands and rename them (x-blockdev-reopen became
// blockdev-reopen in 6.1), so a version number says less than the schema.
type Capabilities struct {
	// Reopen is the command that reopens nodes with new options:
	// "blockdev-reopen" (a list of nodes, atomically), "x-blockdev-reopen"
	// (older QEMUs: one node per call), or "" (none).
	Reopen string
	// LatencyHistograms: block-latency-histogram-set.
	LatencyHistograms bool
	// BlockdevDel: nodes can be deleted (a finished job lets go of its
	// source).
	BlockdevDel bool
	// BlockGraph: the block graph can be read (x-debug-query-block-graph),
	// to see that nothing uses a node before it is deleted.
	BlockGraph bool
	// JobSetSpeed: a running job's speed can be changed.
	JobSetSpeed bool
	// JobDismiss: a concluded job can be dismissed (auto-dismiss off).
	JobDismiss bool
	// WriteBlockingMirror: blockdev-mirror takes copy-mode write-blocking.
	WriteBlockingMirror bool
	// JobChange: a running mirror's copy mode can be switched
	// (block-job-change).
	JobChange bool
}

// Capabilities reads what the schema offers.
func (s *Schema) Capabilities() Capabilities {
	c := Capabilities{
		LatencyHistograms:   s.HasCommand("block-latency-histogram-set"),
		BlockdevDel:         s.HasCommand("blockdev-del"),
		BlockGraph:          s.HasCommand(GraphCommand),
		JobSetSpeed:         s.HasCommand("block-job-set-speed"),
		JobDismiss:          s.HasCommand("job-dismiss"),
		WriteBlockingMirror: s.EnumHas("blockdev-mirror", "copy-mode", "write-blocking"),
		JobChange:           s.HasCommand("block-job-change"),
	}
	switch {
	case s.HasCommand("blockdev-reopen"):
		c.Reopen = "blockdev-reopen"
	case s.HasCommand("x-blockdev-reopen"):
		c.Reopen = "x-blockdev-reopen"
	}
	return c
}

// Names lists what was found, and what qtune uses that is missing
// ("no ..."), in a fixed order, for status.
func (c Capabilities) Names() []string {
	var out []string
	add := func(ok bool, name string) {
		if ok {
			out = append(out, name)
		} else {
			out = append(out, "no "+name)
		}
	}
	if c.Reopen != "" {
		out = append(out, c.Reopen)
	} else {
		out = append(out, "no blockdev-reopen")
	}
	add(c.LatencyHistograms, "latency-histograms")
	add(c.BlockdevDel, "blockdev-del")
	add(c.BlockGraph, "block-graph")
	add(c.JobSetSpeed, "block-job-set-speed")
	add(c.JobDismiss, "job-dismiss")
	add(c.WriteBlockingMirror, "write-blocking-mirror")
	add(c.JobChange, "block-job-change")
	return out
}

// String is Names joined.
func (c Capabilities) String() string { return strings.Join(c.Names(), ", ") }

// QueryCapabilities reads the schema and what it offers, and has b use
// the reopen command this QEMU has.
func (b *Block) QueryCapabilities(ctx context.Context) (Capabilities, error) {
	s, err := b.QuerySchema(ctx)
	if err != nil {
		return Capabilities{}, fmt.Errorf("query-qmp-schema: %w", err)
	}
	c := s.Capabilities()
	b.UseCapabilities(c)
	return c, nil
}
