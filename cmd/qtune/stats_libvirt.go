package main

import (
	"context"
	"errors"
)

func openLibvirtSource(ctx context.Context, f statsFlags) (diskSource, error) {
	return nil, errors.New("libvirt source: not built yet")
}
