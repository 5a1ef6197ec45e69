policies = ["../policy.d/noisy-neighbour.hcl"]

test "a loud writer is throttled, then released" {
  interval = "5s"
  # 0-25s calm, 30-85s loud, from 90s calm again. The throttle applied
  # at 40s holds writes at its limit (300) from 50s while the guest still
  # wants more, until 90s.
  disk "tenant-a" "vda" {
    format     = "qcow2"
    write_iops = "100x6 3000x4 limitx8 100x12"
  }
  # A quiet neighbour on the same host is never touched.
  disk "tenant-b" "vda" {
    format     = "qcow2"
    write_iops = "200x30"
  }

  # The 10 s average crosses 800 in the sample taken at 30s, which covers
  # 25-30s: pending, not yet acting.
  expect {
    at       = "35s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "none"
  }
  # The samples of 30s, 35s and 40s cover 15 s: throttled.
  expect {
    at       = "40s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
    throttle {
      write_iops     = 300
      write_iops_max = 450
    }
  }
  # Pinned at the limit: the demand is unknown, the throttle holds.
  expect {
    at       = "85s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
  }
  # Calm since 90s, but not for 20 s yet.
  expect {
    at       = "105s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "110s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "revert"
  }
  expect {
    at       = "115s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "none"
  }
  expect {
    at       = "60s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-b"
    disk     = "vda"
    decision = "none"
  }
}

test "a gap in the samples never throttles" {
  interval = "5s"
  disk "tenant-a" "vda" {
    write_iops = "3000x2 _x2 3000x2"
  }
  # Two loud samples (10 s) on each side of the gap: neither run is the
  # 15 s of "for", and the gap does not join them.
  expect {
    at       = "25s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "none"
  }
}
