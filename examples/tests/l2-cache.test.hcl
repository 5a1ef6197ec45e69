policies = ["../policy.d/l2-cache.hcl"]

test "a 1 TiB disk read at random gets a cache that covers it" {
  interval = "30s"
  disk "db-1" "vda" {
    format        = "qcow2"
    virtual_size  = "1099511627776x12" # 1 TiB: full coverage needs 128 MiB at 64 KiB clusters
    cluster_size  = "65536x12"
    l2_cache_size = "33554432x12"      # QEMU's default cap, 32 MiB: a quarter of the disk
    read_iops     = "400x12"
  }
  disk "db-1" "vdb" {
    format        = "qcow2"
    virtual_size  = "68719476736x12"   # 64 GiB: 8 MiB covers it, the default does
    cluster_size  = "65536x12"
    l2_cache_size = "8388608x12"
    read_iops     = "400x12"
  }
  expect {
    at       = "4m"
    rule     = "l2-cache-covers-disk"
    vm       = "db-1"
    disk     = "vda"
    decision = "none"
  }
  # Ten samples 30 s apart: the 5 m of "for".
  expect {
    at       = "4m30s"
    rule     = "l2-cache-covers-disk"
    vm       = "db-1"
    disk     = "vda"
    decision = "apply"
  }
  expect {
    at       = "5m"
    rule     = "l2-cache-covers-disk"
    vm       = "db-1"
    disk     = "vdb"
    decision = "none"
  }
}
