policies = ["../policy.d/flatten-chains.hcl"]

test "a long chain is flattened only inside the night window" {
  interval = "5m"
  start    = "2024-01-01T00:30:00Z"
  disk "legacy-7" "vda" {
    backing_depth = "5x12"
  }
  disk "fresh-1" "vda" {
    backing_depth = "1x12"
  }
  # Held for 10 minutes at 00:40, but the window opens at 01:00.
  expect {
    at       = "15m"
    rule     = "flatten-long-chains"
    vm       = "legacy-7"
    disk     = "vda"
    decision = "none"
  }
  expect {
    at       = "30m"
    rule     = "flatten-long-chains"
    vm       = "legacy-7"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "30m"
    rule     = "flatten-long-chains"
    vm       = "fresh-1"
    disk     = "vda"
    decision = "none"
  }
}
