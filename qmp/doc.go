// Package qmp is qtune's door to QEMU: a QMP client for unix sockets
// written for a long-running daemon, and a typed QEMU 7.2 block API that
// works over any Monitor — a socket, or libvirt's passthrough (package
// virt, the other door, holds the libvirt connection).
//
// go-qemu's SocketMonitor is not used for sockets: a reply line over 64 KiB
// kills it, unread events block command replies, calls have no deadline and
// the QMP error class is lost. Conn is written here instead and still
// satisfies go-qemu's qmp.Monitor so go-qemu's fakes fit beside it.
package qmp
