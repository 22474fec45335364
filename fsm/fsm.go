package fsm

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Result is what Apply returns to the proposer for every command. Err holds a business failure
// (ErrNotFound, a *ConflictError, ...); the command then changed nothing.
type Result struct {
	Index     uint64
	Err       error
	Secret    *Secret
	Version   *SecretVersion
	Destroyed []uint64
	AuditSeq  uint64 // last sequence number assigned by AppendAudit
	Token     *Token
	// RotationSeq is the rotation a rotation command started, moved or (RotateNow) will start.
	RotationSeq uint64
}

// handler applies one decoded command to tx. It must be deterministic: no clock, randomness or
// I/O; everything it needs travels in the payload.
type handler func(tx *txn, payload []byte) (*Result, error)

// FSM implements raft.FSM over an immutable State.
type FSM struct {
	log      *slog.Logger
	handlers map[CommandType]handler

	// writeMu serialises the writers of state: Apply, ApplyCommand and Restore. Raft already
	// calls Apply and Restore from one goroutine; the lock makes direct callers (tests,
	// recovery tools) safe too. Readers never take it: they load state atomically and get an
	// immutable view.
	writeMu  sync.Mutex
	state    atomic.Pointer[State]
	interned *interner // guarded by writeMu
	unzip    *unzipper // Apply's decompressor, apart from the readers'; guarded by writeMu

	// appliedMu guards appliedCh, which is closed and replaced each time the index advances.
	appliedMu sync.Mutex
	appliedCh chan struct{}
}

// New returns an FSM with empty state.
func New(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &FSM{log: log, appliedCh: make(chan struct{}), interned: &interner{m: map[string]string{}}, unzip: &unzipper{}}
	f.handlers = map[CommandType]handler{
		CmdPutVersion:       decodeInto(withAudit(applyPutVersion, func(c *PutVersion) *AuditRecord { return c.Audit })),
		CmdDestroyVersions:  decodeInto(applyDestroyVersions),
		CmdDeleteSecret:     decodeInto(applyDeleteSecret),
		CmdRestoreSecret:    decodeInto(applyRestoreSecret),
		CmdPurgeSecret:      decodeInto(applyPurgeSecret),
		CmdNoop:             decodeInto(func(*txn, *Noop) *Result { return &Result{} }),
		CmdPutPolicy:        decodeInto(applyPutPolicy),
		CmdDeletePolicy:     decodeInto(applyDeletePolicy),
		CmdAppendAudit:      decodeInto(applyAppendAudit),
		CmdAppendAuditLines: decodeInto(applyAppendAuditLines),
		CmdAppendAuditZstd:  decodeInto(applyAppendAuditZstd),
	}
	for t, h := range f.identityHandlers() {
		f.handlers[t] = h
	}
	for t, h := range rotationHandlers() {
		f.handlers[t] = h
	}
	f.state.Store(emptyState())
	return f
}

// State returns the current immutable view.
func (f *FSM) State() *State { return f.state.Load() }

// AppliedIndex is the Raft index of the last applied command.
func (f *FSM) AppliedIndex() uint64 { return f.state.Load().index }

// Applied returns a channel closed the next time the applied index changes; callers re-check
// AppliedIndex after it fires.
func (f *FSM) Applied() <-chan struct{} {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.appliedCh
}

// Apply implements raft.FSM. A command that cannot be decoded is a bug that would make
// replicas diverge, so it stops the node (panics) unless it is flagged FlagIgnoreUnknown.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	res, err := f.ApplyEntry(l.Index, l.Data)
	if err != nil {
		f.log.Error("cannot apply log entry: stopping", "index", l.Index, "err", err)
		panic(fmt.Sprintf("fsm: apply index %d: %v", l.Index, err))
	}
	return res
}

// ApplyCommand applies one encoded command (not a batch) at the given index without Raft. It
// returns an error only for an entry that cannot be decoded; business failures are in
// Result.Err.
func (f *FSM) ApplyCommand(index uint64, data []byte) (*Result, error) {
	if len(data) > 0 && CommandType(data[0])&^FlagIgnoreUnknown == CmdBatch {
		return nil, fmt.Errorf("ApplyCommand: a batch needs ApplyEntry")
	}
	res, err := f.ApplyEntry(index, data)
	if err != nil {
		return nil, err
	}
	return res.(*Result), nil
}

// ApplyEntry applies one log entry's data — a command or a batch — at the given index without
// Raft. A command returns a *Result, a batch a *BatchResult.
func (f *FSM) ApplyEntry(index uint64, data []byte) (any, error) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	cur := f.state.Load()
	if len(data) > 0 && CommandType(data[0])&^FlagIgnoreUnknown == CmdBatch {
		next, res, err := f.applyBatch(cur, index, data[1:])
		if err != nil {
			return nil, err
		}
		f.publish(next)
		return res, nil
	}
	next, res, err := f.applyOne(cur, index, data)
	if err != nil {
		return nil, err
	}
	f.publish(next)
	return res, nil
}

// applyOne applies one command to cur and returns the next state. A failed command changes
// nothing but the index.
func (f *FSM) applyOne(cur *State, index uint64, data []byte) (*State, *Result, error) {
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("empty command")
	}
	t := CommandType(data[0])
	h, ok := f.handlers[t&^FlagIgnoreUnknown]
	if !ok {
		if t&FlagIgnoreUnknown != 0 {
			f.log.Warn("skipping unknown command", "index", index, "type", uint8(t))
			return cur.withIndex(index), &Result{Index: index}, nil
		}
		return nil, nil, fmt.Errorf("unknown command type %d", t)
	}
	tx := newTxn(cur)
	tx.interned, tx.unzip = f.interned, f.unzip
	res, err := h(tx, data[1:])
	if err != nil {
		return nil, nil, fmt.Errorf("command type %d: %w", t, err)
	}
	res.Index = index
	if res.Err != nil {
		return cur.withIndex(index), res, nil
	}
	return tx.commit(index), res, nil
}

func (f *FSM) publish(s *State) {
	f.state.Store(s)
	f.appliedMu.Lock()
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.appliedMu.Unlock()
}

// StoreConfiguration implements raft.ConfigurationStore. Keyward keeps no state about the
// configuration here; it only advances the applied index, so that every committed entry
// except Raft's internal no-ops and barriers moves it (see cluster/reads.go).
func (f *FSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if cur := f.state.Load(); index > cur.index {
		f.publish(cur.withIndex(index))
	}
}

// Snapshot implements raft.FSM: it captures the immutable view in O(1); Persist does the I/O.
// Raft never calls Snapshot concurrently with Apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{state: f.state.Load()}, nil
}

// Restore implements raft.FSM: it reads a snapshot stream written by Persist and swaps the
// whole state under writeMu.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	f.publish(s)
	return nil
}

func (s *State) withIndex(index uint64) *State {
	c := *s
	c.index = index
	return &c
}
