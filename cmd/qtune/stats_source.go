package main

import (
	"context"

	"github.com/qtune/qtune/internal/sample"
	"github.com/qtune/qtune/qmp"
)

func openSource(ctx context.Context, f statsFlags) (diskSource, error) {
	if f.qmpPath != "" {
		return openQMPSource(ctx, f)
	}
	return openLibvirtSource(ctx, f)
}

// qmpSource reads one plain QEMU VM over its QMP socket.
type qmpSource struct {
	conn  *qmp.Conn
	block *qmp.Block
	name  string
	l2    map[string]uint64
}

func openQMPSource(ctx context.Context, f statsFlags) (*qmpSource, error) {
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c, err := qmp.DialVM(cctx, f.qmpPath)
	if err != nil {
		return nil, err
	}
	s := &qmpSource{conn: c, block: qmp.NewBlock(c), name: qmp.VMName(f.qmpPath)}
	// l2-cache-size is on QEMU's command line when it was set at start; the
	// rest of the time QEMU's default applies.
	if pid := c.PeerPID(); pid > 0 {
		if opts, err := qmp.CommandLineBlockdevs(pid); err == nil || len(opts) > 0 {
			s.l2 = qmp.L2CacheSizes(opts)
		}
	}
	return s, nil
}

func (s *qmpSource) Sample(ctx context.Context) ([]sample.Disk, error) {
	return s.block.SampleDisks(ctx, s.name, qmp.SampleOptions{L2CacheSize: s.l2})
}

func (s *qmpSource) Close() error { return s.conn.Close() }
