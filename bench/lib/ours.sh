# shellcheck shell=bash
# The slot where nucleus-migrate plugs into the benchmark.
#
# The driver (bench/run) does all the measuring itself, the same way for the
# baseline and for us: downtime from the workload's own largest tick gap,
# total time from its wall clock around the call, bytes on the wire from the
# nodes' link counters, heap integrity from the workload's checksum. These
# functions only have to move things. Contract:
#
#   ours_available
#       Returns 0 when our tool can run here. Otherwise prints ONE line saying
#       why (the report quotes it) and returns non-zero; the driver then
#       reports the baseline alone and says that ours is missing.
#
#   ours_setup
#       Called once after the nodes are up (fx_nodes_up plus a tmpfs per node
#       at $(b_img_dir n1), $(b_img_dir n2), free for staging): start an agent
#       on each node (fx_in NODE ...; fx_track_pid the pids so the fixture's
#       teardown ends them), provision keys and known_hosts from
#       $(fx_dir NODE)/ssh, the HMAC cluster key, and so on.
#
#   ours_migrate FROM TO ID MODE
#       Moves nucleus container ID (registered in $(fx_dir FROM)/nucleus) from
#       node FROM to node TO; MODE is "default" or "lazy" (post-copy). Returns
#       once the container runs on TO. Prints key=value lines on stdout:
#         pid=N          required: host pid of the restored container init
#                        (the destination's state file has it)
#         dump_s=S xfer_s=S restore_s=S
#                        optional: stage times, for the report's split (with
#                        overlapping stages, give each stage's own span)
#       Returns non-zero on failure (the run is reported as failed, never
#       dropped).
#
#   ours_lazy_wait FROM TO ID
#       After ours_migrate ... lazy: blocks until post-copy is over (every
#       page reached TO, the source released the container's memory).
#       Returns non-zero if it failed. The driver counts the workload's
#       stalls until then as downtime and this time in the total.
#
#   ours_stream FROM TO DIR
#       Sends every file of the checkpoint directory DIR (on FROM) through our
#       image stream to TO, where the bytes are received (and verified, as in
#       a migration) and then discarded or staged on TO's tmpfs. Returns 0
#       once TO has everything. The driver times the call.
#
#   ours_cleanup FROM TO ID
#       Removes whatever a run left (staging directories, journals) so that
#       the next run starts clean. Must not fail when there is nothing.

OURS_MISSING="nucleus-migrate is not available yet (bench/lib/ours.sh is not wired to it)"

ours_available() {
	echo "$OURS_MISSING"
	return 1
}

ours_setup() {
	return 0
}

ours_migrate() {
	b_log "ours_migrate: $OURS_MISSING"
	return 1
}

ours_lazy_wait() {
	b_log "ours_lazy_wait: $OURS_MISSING"
	return 1
}

ours_stream() {
	b_log "ours_stream: $OURS_MISSING"
	return 1
}

ours_cleanup() {
	return 0
}
