// Package facts finds VMs and reads their disks: plain QEMU VMs by their
// QMP sockets (a directory watched, or sockets named), libvirt domains
// over one connection (one bulk stats call per sample; each domain's XML
// read when first seen, on libvirt's events and now and then). Each
// sample is a sample.Disk per disk with its counters and the facts that
// change rarely (format, cache mode, throttle in force, chain, L2 cache),
// each VM within its own deadline.
//
// It is the one reader of VM facts: the agent, qtune stats and qtune
// doctor's live checks all read through it, so they name, find and
// measure VMs alike. It changes nothing on a VM. Those who do (the
// agent's tuning backends) are handed each VM's connection and identity
// through QMPHooks and the libvirt connection through Options.OnLibvirt,
// and hear what the domains' XML says through a LibvirtSink.
//
// facts sits above qmp, virt and internal/*, and below doctor, the
// agent and the commands.
package facts
