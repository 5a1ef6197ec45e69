policies = ["naive.hcl"]

test "pinned at the limit holds the throttle, calm releases it" {
  interval = "1s"
  # 0-2 calm, 3-6 loud (pending from 3, firing at 6), 7-26 pinned at the
  # throttle the rule applied, from 27 calm.
  disk "loud-a" "vda" {
    write_iops = "100x3 3000x4 limitx20 100x10"
  }
  expect {
    at       = "6s"
    rule     = "calm-noisy-writers"
    vm       = "loud-a"
    disk     = "vda"
    decision = "apply"
    throttle { write_iops = 256 }
  }
  # Where the old reading would have reverted (pinned at 256 < 1000 for 5s).
  expect {
    at       = "12s"
    rule     = "calm-noisy-writers"
    vm       = "loud-a"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "26s"
    rule     = "calm-noisy-writers"
    vm       = "loud-a"
    disk     = "vda"
    decision = "apply"
  }
  # Calm from 27s: clear_after (5s) of known calm.
  expect {
    at       = "31s"
    rule     = "calm-noisy-writers"
    vm       = "loud-a"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "32s"
    rule     = "calm-noisy-writers"
    vm       = "loud-a"
    disk     = "vda"
    decision = "revert"
  }
}

test "a disk well below its limit has calmed" {
  interval = "1s"
  # 200 < 90% of 256: a real reading, the demand has fallen.
  disk "loud-b" "vda" {
    write_iops = "3000x4 limitx3 200x10"
  }
  expect {
    at       = "6s"
    rule     = "calm-noisy-writers"
    vm       = "loud-b"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "12s"
    rule     = "calm-noisy-writers"
    vm       = "loud-b"
    disk     = "vda"
    decision = "revert"
  }
}

test "a flicker at the limit restarts clear_after" {
  interval = "1s"
  disk "loud-c" "vda" {
    write_iops = "3000x4 100x3 limit 100x10"
  }
  # Calm from 4s, pinned at 7s (the clear_after clock starts again), calm
  # again from 8s: release at 12s, not 9s.
  expect {
    at       = "9s"
    rule     = "calm-noisy-writers"
    vm       = "loud-c"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "12s"
    rule     = "calm-noisy-writers"
    vm       = "loud-c"
    disk     = "vda"
    decision = "revert"
  }
}

test "true or unknown is true" {
  interval = "1s"
  disk "either" "vda" {
    write_iops = "3000x3 limitx10"
    read_iops  = "0x3 600x5 0x5"
  }
  expect {
    at       = "2s"
    rule     = "either"
    vm       = "either"
    disk     = "vda"
    decision = "apply"
  }
  # Reads above 500 while writes are held: known true, still firing.
  # Reads calm from 8s while writes are held: unknown, the throttle holds.
  expect {
    at       = "12s"
    rule     = "either"
    vm       = "either"
    disk     = "vda"
    decision = "apply"
  }
}

test "unknown and false is false" {
  interval = "1s"
  disk "both" "vda" {
    write_iops = "3000x5 limitx10"
  }
  host {
    io_pressure_some_avg10 = "30x7 5x8"
  }
  expect {
    at       = "4s"
    rule     = "both"
    vm       = "both"
    disk     = "vda"
    decision = "apply"
  }
  # Pressure gone at 7s: false although writes are held, released 3s later.
  expect {
    at       = "10s"
    rule     = "both"
    vm       = "both"
    disk     = "vda"
    decision = "revert"
  }
}

test "release_when decides the way out" {
  interval = "1s"
  # Firing at 2s, pinned at 500 from 3s, 300 from 7s (below when's 1000,
  # not below release_when's 100: held), 50 from 12s (released 3s later).
  disk "hyst" "vda" {
    write_iops = "3000x3 limitx4 300x5 50x6"
  }
  expect {
    at       = "2s"
    rule     = "hysteresis"
    vm       = "hyst"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "11s"
    rule     = "hysteresis"
    vm       = "hyst"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "14s"
    rule     = "hysteresis"
    vm       = "hyst"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "15s"
    rule     = "hysteresis"
    vm       = "hyst"
    disk     = "vda"
    decision = "revert"
  }
}

test "a window over a neighbour's latency" {
  interval = "1s"
  disk "nw-culprit" "vda" {
    device    = "8:0"
    write_bps = "5000000x10"
  }
  disk "nw-victim" "vda" {
    device          = "8:0"
    read_latency_ms = "2x3 50x7"
  }
  # The 3 s average of the victim's latency crosses 20 at 4s (2, 50, 50).
  expect {
    at       = "3s"
    rule     = "neighbour-window"
    vm       = "nw-culprit"
    disk     = "vda"
    decision = "none"
  }
  expect {
    at       = "6s"
    rule     = "neighbour-window"
    vm       = "nw-culprit"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "6s"
    rule     = "neighbour-window"
    vm       = "nw-victim"
    disk     = "vda"
    decision = "none"
  }
}
