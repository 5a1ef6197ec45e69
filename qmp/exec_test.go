package qmp_test

import (
	"context"
	osexec "os/exec"
)

func exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := osexec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
