package jepsen

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"
)

// Outcome of an operation, as in Jepsen: ok (it happened and we saw its result), fail (it
// certainly did not happen) or info (unknown: it may or may not have happened).
const (
	OK   = "ok"
	Fail = "fail"
	Info = "info"
)

// Op is one client operation of the history. Times are nanoseconds since the run started.
type Op struct {
	Kind     string `json:"kind"` // "op"
	ID       int64  `json:"id"`
	Worker   int    `json:"worker"`
	Node     int    `json:"node"` // index of the node the client asked
	Workload string `json:"workload"`
	F        string `json:"f"` // read, write, cas, read-stale, read-state, list, rotate
	Key      string `json:"key"`
	// Inputs.
	Value    string  `json:"value,omitempty"`  // written value, or the value a read returned
	Expect   *uint64 `json:"expect,omitempty"` // cas: the expected CURRENT version (0: absent)
	State    string  `json:"state,omitempty"`  // read-state: the state asked for
	MaxStale int64   `json:"max_stale_ns,omitempty"`
	// Outputs.
	Type           string   `json:"type"` // ok, fail, info
	Found          bool     `json:"found,omitempty"`
	Version        uint64   `json:"version,omitempty"`
	VersionID      string   `json:"version_id,omitempty"`
	RespState      string   `json:"resp_state,omitempty"`
	Listing        *Listing `json:"listing,omitempty"`
	CurrentVersion *uint64  `json:"current_version,omitempty"` // cas_mismatch: the actual one
	Code           string   `json:"code,omitempty"`
	Err            string   `json:"error,omitempty"`
	RequestID      string   `json:"request_id,omitempty"`
	Index          uint64   `json:"index,omitempty"`
	LastContactMS  int64    `json:"last_contact_ms,omitempty"`
	StalenessMS    int64    `json:"staleness_ms,omitempty"` // X-Keyward-Staleness of a stale read
	Invoke         int64    `json:"invoke"`
	Complete       int64    `json:"complete"`
}

// VersionInfo is one entry of a version listing, as the history keeps it.
type VersionInfo struct {
	Version   uint64 `json:"v"`
	VersionID string `json:"id"`
	State     string `json:"s"`
	Destroyed bool   `json:"d,omitempty"`
}

// Listing is what the history keeps of a version listing: its shape, the invariant problems
// found when it was read, and its newest versions (listings grow with every write, so keeping
// them whole would make the history quadratic).
type Listing struct {
	Count    int           `json:"count"`
	Min      uint64        `json:"min"`
	Max      uint64        `json:"max"`
	Problems []string      `json:"problems,omitempty"`
	Newest   []VersionInfo `json:"newest"` // the listTail newest versions, newest first
}

// listTail is how many of a listing's newest versions the history keeps.
const listTail = 16

// NewListing summarizes a listing (any order) whose current_version is current.
func NewListing(vs []VersionInfo, current uint64) *Listing {
	l := &Listing{Count: len(vs), Problems: listingProblems(vs, current)}
	sorted := append([]VersionInfo(nil), vs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Version > sorted[j].Version })
	if len(sorted) > 0 {
		l.Max, l.Min = sorted[0].Version, sorted[len(sorted)-1].Version
	}
	// A copy: a subslice would keep the whole listing alive for the rest of the run.
	l.Newest = slices.Clone(sorted[:min(len(sorted), listTail)])
	return l
}

// Event is a nemesis (or harness) event of the history.
type Event struct {
	Kind   string `json:"kind"` // "nemesis"
	Name   string `json:"name"`
	Phase  string `json:"phase"` // start, stop
	Detail string `json:"detail,omitempty"`
	Time   int64  `json:"time"`
}

// History records operations and events in memory and, as JSON lines, in a file.
type History struct {
	start time.Time
	mu    sync.Mutex
	f     *os.File
	w     *bufio.Writer
	ops   []Op
	evs   []Event
	next  int64
	err   error
}

// NewHistory creates the history file at path; times count from now.
func NewHistory(path string) (*History, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("jepsen: history: %w", err)
	}
	return &History{start: time.Now(), f: f, w: bufio.NewWriterSize(f, 1<<16)}, nil
}

// Now is the time since the run started, in nanoseconds.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Start is the wall-clock time the history counts from.
func (h *History) Start() time.Time { return h.start }

// Add records a completed operation and returns its id.
func (h *History) Add(op Op) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Kind = "op"
	op.ID = h.next
	h.next++
	h.ops = append(h.ops, op)
	h.write(op)
	return op.ID
}

// Event records a nemesis event at the current time.
func (h *History) Event(name, phase, detail string) Event {
	e := Event{Kind: "nemesis", Name: name, Phase: phase, Detail: detail, Time: h.Now()}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.evs = append(h.evs, e)
	h.write(e)
	return e
}

func (h *History) write(v any) {
	b, err := json.Marshal(v)
	if err == nil {
		b = append(b, '\n')
		_, err = h.w.Write(b)
	}
	if err != nil && h.err == nil {
		h.err = err
	}
}

// Len is the number of operations recorded so far.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Ops returns a copy of the operations recorded so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Events returns a copy of the events recorded so far.
func (h *History) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.evs...)
}

// Close flushes and closes the file.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.w.Flush(); err != nil && h.err == nil {
		h.err = err
	}
	if err := h.f.Close(); err != nil && h.err == nil {
		h.err = err
	}
	return h.err
}
