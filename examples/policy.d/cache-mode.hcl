# A disk that flushes a lot under writeback caching pays twice: suggest
# cache=none (O_DIRECT). Recommend only: an SRE reads the reason in
# qtune status and decides.
rule "direct-io-for-flush-heavy-disks" {
  mode = "recommend"
  when = disk.cache_mode == "writeback" && disk.flush_iops > 100 && disk.write_iops > 500
  for  = "10m"
  clear_after = "30m"

  cache {
    direct = true
  }
}
