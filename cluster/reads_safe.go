//go:build !keyward_unsafe

package cluster

// unsafeLocalReads is false in every real build: linearizable reads confirm leadership (see
// ReadIndex). The chaos suite (jepsen/) builds a broken variant with -tags keyward_unsafe to
// prove that it catches stale reads.
const unsafeLocalReads = false
