package audit

import "os"

// Fsyncs is the number of fsyncs of segment files so far.
func (l *Log) Fsyncs() uint64 { return l.syncs.Load() }

// SetHook installs fn to run before each file operation of the writer: "write", "sync",
// "create", "dirsync" or "repair" (f is the active segment for write, sync and repair). A
// non-nil error fails the operation.
func (l *Log) SetHook(fn func(op string, f *os.File) error) {
	l.mu.Lock()
	l.hook = fn
	l.mu.Unlock()
}

// SegmentName is the file name of the segment whose first record has NodeSeq first.
func SegmentName(first uint64) string { return segName(first) }
