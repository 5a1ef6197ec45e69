policies = ["../policy.d/cache-mode.hcl"]

test "a flush-heavy writeback disk gets a recommendation" {
  interval = "1m"
  disk "app-1" "vda" {
    cache_mode = "writeback"
    flush_iops = "300x12"
    write_iops = "900x12"
  }
  disk "app-2" "vda" {
    cache_mode = "none"
    flush_iops = "300x12"
    write_iops = "900x12"
  }
  expect {
    at       = "8m"
    rule     = "direct-io-for-flush-heavy-disks"
    vm       = "app-1"
    disk     = "vda"
    decision = "none"
  }
  # Ten samples of a minute each: the 10 m of "for".
  expect {
    at       = "9m"
    rule     = "direct-io-for-flush-heavy-disks"
    vm       = "app-1"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "10m"
    rule     = "direct-io-for-flush-heavy-disks"
    vm       = "app-2"
    disk     = "vda"
    decision = "none"
  }
}
