"""The reliability suite: the failure matrix (every command x every failure class), fuzzers of every reader,
interruption, concurrent writers, untrusted checkpoints, and what resumed or cached work may reuse."""
