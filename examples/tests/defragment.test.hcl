policies = ["../policy.d/defragment.hcl"]

test "a fragmented image is rewritten at night, a corrupt one never" {
  interval = "10m"
  start    = "2024-01-01T00:00:00Z"
  disk "db-1" "vda" {
    format        = "qcow2"
    fragmentation = "0.7x30"
  }
  disk "db-2" "vda" {
    format        = "qcow2"
    fragmentation = "0.7x30"
    corrupt       = "1x30"
  }
  disk "web-1" "vda" {
    format        = "qcow2"
    fragmentation = "0.1x30"
  }
  # Fragmented since midnight, but the window opens at 01:00.
  expect {
    at       = "50m"
    rule     = "rewrite-fragmented-images"
    vm       = "db-1"
    disk     = "vda"
    decision = "none"
  }
  expect {
    at       = "1h"
    rule     = "rewrite-fragmented-images"
    vm       = "db-1"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "1h"
    rule     = "rewrite-fragmented-images"
    vm       = "db-2"
    disk     = "vda"
    decision = "none"
  }
  expect {
    at       = "1h"
    rule     = "rewrite-fragmented-images"
    vm       = "web-1"
    disk     = "vda"
    decision = "none"
  }
}
