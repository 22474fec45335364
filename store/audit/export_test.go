package audit

import "os"

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

// Queued is the number of records appended but not yet taken by the writer.
func (l *Log) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == 0 {
		return 0
	}
	return int(l.nextSeq - l.bufFirst)
}
