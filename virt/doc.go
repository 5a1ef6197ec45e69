// Package virt is qtune's door to libvirtd: one connection kept for a
// long-running daemon (reconnects, deadlines, a slow answer not taken for
// a lost connection), libvirt's own API for what qtune reads and changes —
// bulk domain stats, the domain XML, throttles, block jobs, domain events
// including the tunable event a blkdeviotune emits and the lifecycle
// events of a live migration, the domain's job (is it migrating), and
// qtune's ownership records kept in the domain's own metadata so they
// travel with it (ownership.go) — and, only where
// allowed, a QMP passthrough monitor (Passthrough) for what libvirt cannot
// do live, which taints the domain.
//
// It sits beside package qmp, whose typed block API runs over that
// passthrough as over a socket.
package virt
