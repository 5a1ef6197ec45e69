policies = ["../policy.d/protect-neighbours.hcl"]

test "the culprit is throttled when its neighbour suffers, never the victim" {
  interval = "5s"
  # tenant-a and tenant-b share device 8:16. tenant-a writes 40 MB/s from
  # 20s to 40s, then runs at its 10 MiB/s throttle until 115s, then calms.
  disk "tenant-a" "vda" {
    device    = "8:16"
    write_bps = "1000000x4 40000000x5 limitx15 500000x16"
  }
  # tenant-b reads slowly while tenant-a is loud, better once it is held.
  disk "tenant-b" "vda" {
    device          = "8:16"
    read_iops       = "200x40"
    read_latency_ms = "2x4 60x5 8x15 2x16"
    write_bps       = "100000x40"
  }
  # tenant-c reads slowly on a device of its own: no neighbour to blame.
  disk "tenant-c" "vda" {
    device          = "8:32"
    read_latency_ms = "100x40"
    write_bps       = "50000000x40"
  }

  expect {
    at       = "30s"
    rule     = "protect-neighbours"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "none"
  }
  # The samples of 20s to 35s cover 15-35s: the 20 s of "for".
  expect {
    at       = "35s"
    rule     = "protect-neighbours"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
    throttle { write_bps = 10485760 }
  }
  # Held at its limit: the neighbour is fine now, but the culprit's demand
  # is unknown, so the throttle stays.
  expect {
    at       = "115s"
    rule     = "protect-neighbours"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
  }
  # Calm from 120s: released after clear_after (1m).
  expect {
    at       = "175s"
    rule     = "protect-neighbours"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "180s"
    rule     = "protect-neighbours"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "revert"
  }
  expect {
    at       = "40s"
    rule     = "protect-neighbours"
    vm       = "tenant-b"
    disk     = "vda"
    decision = "none"
  }
  expect {
    at       = "60s"
    rule     = "protect-neighbours"
    vm       = "tenant-b"
    disk     = "vda"
    decision = "none"
  }
  expect {
    at       = "60s"
    rule     = "protect-neighbours"
    vm       = "tenant-c"
    disk     = "vda"
    decision = "none"
  }
}
