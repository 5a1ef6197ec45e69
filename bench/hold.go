package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/qtune/qtune/internal/lab"
)

// holdVMs starts the VMs of a sampling benchmark and keeps them until
// interrupted, for profiling the agent against them by hand:
//
//	go run ./bench hold 400 /tmp/vms     # sockets in /tmp/vms/sockets
//	qtune agent --qmp-dir /tmp/vms/sockets --pprof ...
func holdVMs(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bench hold DISKS DIR")
		return 2
	}
	disks, err := strconv.Atoi(args[0])
	if err != nil || disks < disksPerVM || disks%disksPerVM != 0 {
		fmt.Fprintf(os.Stderr, "bench hold: disks %q must be a multiple of %d\n", args[0], disksPerVM)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	vms, err := startVMs(ctx, args[1], disks/disksPerVM)
	defer func() {
		for _, vm := range vms {
			vm.Stop()
		}
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench hold:", err)
		return 1
	}
	fmt.Printf("%d VMs of %d disks; sockets in %s\n", len(vms), disksPerVM, filepath.Join(args[1], "sockets"))
	<-ctx.Done()
	return 0
}

// holdLibvirt is holdVMs under a lab libvirtd: paused domains of
// disksPerVM disks each, kept until interrupted.
//
//	go run ./bench hold-libvirt 400 /tmp/vms   # prints the libvirt socket
func holdLibvirt(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bench hold-libvirt DISKS DIR")
		return 2
	}
	disks, err := strconv.Atoi(args[0])
	if err != nil || disks < disksPerVM || disks%disksPerVM != 0 {
		fmt.Fprintf(os.Stderr, "bench hold-libvirt: disks %q must be a multiple of %d\n", args[0], disksPerVM)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := lab.StartLibvirtd(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench hold-libvirt:", err)
		return 1
	}
	defer d.Stop()
	for i := 0; i < disks/disksPerVM; i++ {
		if err := pausedDomain(ctx, d, args[1], i); err != nil {
			fmt.Fprintln(os.Stderr, "bench hold-libvirt:", err)
			return 1
		}
	}
	fmt.Printf("%d paused domains of %d disks; libvirt socket %s (libvirtd pid %d)\n", disks/disksPerVM, disksPerVM, d.SocketPath(), d.PID())
	<-ctx.Done()
	return 0
}
