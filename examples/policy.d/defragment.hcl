# The agent's disk checks (qtune doctor's checks, qemu-img check every few
# hours) measure how fragmented each qcow2 image is. A fragmented image
# turns the guest's sequential I/O into scattered host I/O: rewrite it at
# night into a new, metadata-preallocated image. A corrupt image is left
# alone: it needs a person (`qtune doctor` says what to do).
rule "rewrite-fragmented-images" {
  match {
    format = "qcow2"
  }
  when   = disk.fragmentation > 0.5 && !disk.corrupt
  for    = "30m"
  window = "01:00-05:00"

  convert {
    preallocation = "metadata"
    speed         = "50MiB"
  }
}
