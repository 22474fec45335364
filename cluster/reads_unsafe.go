//go:build keyward_unsafe

package cluster

// unsafeLocalReads breaks linearizable reads on purpose: every node answers them from its
// local state without confirming leadership, so a partitioned node serves stale values as
// linearizable. Only the chaos suite's self-test builds this (go build -tags keyward_unsafe);
// never ship it.
const unsafeLocalReads = true
