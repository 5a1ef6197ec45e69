policies = ["../policy.d/noisy-neighbour.hcl"]

test "a loud writer is throttled, then released" {
  interval = "5s"
  # 0-25s calm, 30-85s loud, from 90s calm again.
  disk "tenant-a" "vda" {
    format     = "qcow2"
    write_iops = "100x6 3000x12 100x12"
  }
  # A quiet neighbour on the same host is never touched.
  disk "tenant-b" "vda" {
    format     = "qcow2"
    write_iops = "200x30"
  }
  host {
    io_pressure_some_avg10 = "25x30"
  }

  # The 20 s average crosses 800 at 30s: pending, not yet acting.
  expect {
    at       = "40s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "none"
  }
  # Held for 15 s: throttled.
  expect {
    at       = "45s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
    throttle {
      write_iops     = 300
      write_iops_max = 450
    }
  }
  # Calm since 105s (the average falls under 800), but not for 20 s yet.
  expect {
    at       = "120s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "125s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "revert"
  }
  expect {
    at       = "130s"
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
    write_iops = "3000x3 _x2 3000x3"
  }
  host {
    io_pressure_some_avg10 = "25x8"
  }
  expect {
    at       = "35s"
    rule     = "calm-noisy-writers"
    vm       = "tenant-a"
    disk     = "vda"
    decision = "none"
  }
}
