// Package seqid makes identifiers that must be unique but need not be unpredictable, for
// things made at the rate of requests: audit records and request ids. A generator draws a
// random prefix once and counts; each id is an RFC 9562 version-8 UUID of the two.
//
// Consecutive ids of one generator share their first 19 characters and differ in a counter,
// so a batch of audit records carrying them compresses to about half the size of one carrying
// random UUIDs (every record is replicated through Raft to every node), and making one costs
// no call to the random source. Use random UUIDs where an id must not be guessable (token
// accessors, for example).
package seqid

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"

	"github.com/google/uuid"
)

// Gen makes ids; it is safe for concurrent use. Two generators, in one process or in many,
// share a prefix with probability about 2^-60 per pair.
type Gen struct {
	prefix [8]byte // 60 random bits and the version nibble
	n      atomic.Uint64
}

// New returns a generator with a fresh random prefix.
func New() *Gen {
	g := &Gen{}
	// crypto/rand.Read does not fail: it aborts the program instead.
	_, _ = rand.Read(g.prefix[:])
	g.prefix[6] = g.prefix[6]&0x0f | 0x80 // version 8: a custom layout
	return g
}

// Next returns the next id.
func (g *Gen) Next() string {
	var u uuid.UUID
	copy(u[:8], g.prefix[:])
	binary.BigEndian.PutUint64(u[8:], g.n.Add(1))
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant; leaves the counter 62 bits
	return u.String()
}
