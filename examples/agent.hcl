# qtune agent configuration: /etc/qtune/agent.hcl
# Every setting is optional; the values below are the defaults unless
# marked otherwise. Flags given to `qtune agent` override this file.

# Where the VMs are. Default: the local libvirtd socket.
libvirt_socket = "/run/libvirt/libvirt-sock"
# libvirt_uri  = "qemu+ssh://root@hv12/system"   # a remote daemon instead
# qmp_dir      = "/run/qtune/qmp"                # plain QEMU: a directory of *.sock QMP sockets
libvirt_pid_dir = "/run/libvirt/qemu"            # QEMU pid files, to read -blockdev options

interval     = "10s"   # sampling and evaluation period
# A quiet VM (its QEMU moves little I/O, no rule pending or firing on it,
# no knob held, no job) is sampled only this often; it is sampled every
# interval again from the cycle after it turns loud. At or below interval
# (the default, 0): every VM every interval.
idle_interval = "0s"
call_timeout = "5s"    # deadline of each call to QEMU or libvirt
# An owned knob whose rule is gone or whose VM cannot be reached is
# retried every cycle (with backoff); orphaned this long, it is a warning
# in the log and in qtune status.
orphan_warn_after = "10m"

policy_dir = "/etc/qtune/policy.d"   # *.hcl rules, reloaded on SIGHUP
state_dir  = "/var/lib/qtune"        # the state store: what qtune changed, the original values
listen     = "127.0.0.1:9477"   # /metrics, /healthz, /v1/status; or "unix:/run/qtune/qtune.sock"
# A Prometheus web config (as exporters take): TLS and basic auth for the
# listener. Needed before listening beyond loopback. "" = plain HTTP.
web_config_file = ""

dry_run = false   # decide and record, never change a VM

# Changing cache mode or the qcow2 cache live under libvirt needs QMP sent
# through libvirt: the domain is then marked "tainted: custom-monitor" and
# its live settings differ from its XML. Throttles never need it.
allow_passthrough = false

log_level  = "info"   # reloaded on SIGHUP
log_format = "json"   # or "text"

# How much qtune may change, whatever the rules say.
limits {
  per_vm_per_hour     = 12      # changes to one VM
  per_host_per_minute = 30      # changes on the whole host
  min_change          = 0.05    # ignore changes smaller than 5 %
  l2_cache_budget     = "1GiB"  # memory for qcow2 L2 caches qtune sets, all VMs together
}

# Latency histograms (plain QEMU VMs; libvirt does not offer them) feed the
# p95/p99 metrics. Unset, qtune turns them on while a rule in force reads
# such a metric and off again (only where it turned them on) once none
# does; true keeps them on, false never turns them on (those rules' p99
# conditions are then unknown, and the log says so).
histograms {
  # enabled     = true     # unset: on while a rule in force needs them
  boundaries_ms = [1, 5, 10, 50, 100, 500]   # bucket bounds of each histogram
}

# Block jobs (stream, mirror, convert) from rules or `qtune jobs start`.
# A mirror writes only into these directories (also --allow-mirror-dir);
# the systemd unit needs the same list in ReadWritePaths=.
mirror_dirs = []
# `qtune jobs start|cancel` talk to the agent here: mode 0660, owner root
# and control_group (empty: root only). Never the metrics listener.
control_socket = "/run/qtune/control.sock"
control_group  = ""   # group allowed on the control socket besides root

# How many block jobs run, and when.
jobs {
  host_budget      = 2        # jobs at once on the host
  dir_budget       = 1        # jobs at once writing into one directory
  windows          = []       # e.g. ["01:00-05:00"]: start jobs only then (local time)
  converge_timeout = "30m"    # a copy not ready by then is given up (see allow_write_blocking)
  # Write-blocking copies (asked for, or tried once before giving up):
  # off, since QEMU can crash when such a copy is cancelled or fails
  # before it is ready while the guest writes (docs/jobs.md).
  allow_write_blocking = false
  max_attempts     = 3        # starts tried, with backoff, before a job fails
  space_margin     = "1GiB"   # free space asked beyond what a copy needs
}

# qtune doctor's checks on every disk sampled (findings as
# qtune_disk_finding, in qtune status, and as disk.* policy metrics):
# the cheap ones every interval; qemu-img check, which reads an image's
# whole metadata, at most every check_interval per image, one at a time.
doctor {
  enabled        = true         # checks on every disk sampled
  interval       = "5m"         # the cheap checks, per disk
  check_interval = "6h"         # qemu-img check, per image
  qemu_img       = "qemu-img"   # the qemu-img binary
}

# A fleet-wide budget for copies, shared by every host on etcd
# (docs/fleet.md): each mirror, convert or stream into a budget's
# directories takes one of its slots first, so a storage backend never
# runs more copies, or more copy bandwidth, than its budget, whichever
# hosts they start from. Off unless a fleet block is given; every host
# should carry the same budget blocks.
# fleet {
#   endpoints       = ["https://etcd-1:2379", "https://etcd-2:2379"]   # etcd's client URLs
#   dial_timeout    = "5s"       # connecting to etcd
#   request_timeout = "2s"       # each etcd call
#   lease_ttl       = "15s"      # a dead host's slots return after this
#   floor_speed     = "1MiB"     # per second, for a copy whose slot is lost until it is taken again
#   ca_file         = ""         # TLS: the CA that signed etcd's certificates
#   cert_file       = ""         # TLS: this host's client certificate
#   key_file        = ""         # TLS: its key
#   username        = ""         # etcd's own authentication, if enabled
#   password_file   = ""         # the password for username, read at load
#   prefix          = "/qtune/budgets/"   # where the budgets' keys live in etcd
#   host            = ""         # this host's name in the fleet and in the records a domain carries; the hostname when empty
# }
# One budget per storage backend:
# budget "nfs-a" {
#   dirs       = ["/srv/nfs-a"]  # target directories, and source directories of streams
#   max_copies = 1               # copies at once, fleet-wide
#   max_speed  = "16MiB"         # per second, summed over its copies
# }
