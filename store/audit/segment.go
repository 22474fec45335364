package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/keyward/keyward/fsm"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	segPrefix = "audit-"
	segSuffix = ".log"
	segDigits = 20
	crcLen    = 8 // hex digits before the space
)

func segName(first uint64) string {
	return fmt.Sprintf("%s%0*d%s", segPrefix, segDigits, first, segSuffix)
}

func segPath(dir string, first uint64) string { return filepath.Join(dir, segName(first)) }

// parseSegName returns the first NodeSeq of a segment file name.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, segPrefix)
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, segSuffix)
	if !ok || len(digits) != segDigits {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

// listSegments returns the segment files in dir, sorted by first NodeSeq.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: read directory: %w", err)
	}
	var segs []segment
	for _, e := range ents {
		if first, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, segment{first: first, path: filepath.Join(dir, e.Name())})
		}
	}
	slices.SortFunc(segs, func(a, b segment) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	return segs, nil
}

const hexDigits = "0123456789abcdef"

// encodedRecord is a record encoded for a line, all but its NodeSeq. Encoding takes most of
// the CPU time of an Append; this way it happens before the Append takes the Log's mutex,
// which it then holds only to append the NodeSeq.
type encodedRecord struct {
	buf  []byte   // the JSON object without its closing brace
	sum  uint32   // CRC-32C of buf
	tail [32]byte // room for the NodeSeq member (a local array would escape to the heap)
}

// encodedRecords keeps encodedRecords for reuse, so that encoding allocates nothing.
var encodedRecords = sync.Pool{New: func() any { return new(encodedRecord) }}

// encodeRecord encodes r, whose NodeSeq must be 0, for appendLine. The caller hands the
// result back with release.
func encodeRecord(r *fsm.AuditRecord) *encodedRecord {
	e := encodedRecords.Get().(*encodedRecord)
	b := fsm.AppendAuditJSON(e.buf[:0], r) // always an object: it ends in '}'
	e.buf = b[:len(b)-1]
	e.sum = crc32.Checksum(e.buf, castagnoli)
	return e
}

func (e *encodedRecord) release() {
	if cap(e.buf) > 64<<10 {
		e.buf = nil // do not keep a huge buffer for every record
	}
	encodedRecords.Put(e)
}

// appendLine appends e with NodeSeq seq as one line of the segment format to buf. NodeSeq,
// which encodeRecord left out (omitempty), becomes the last member of the JSON object.
func appendLine(buf []byte, e *encodedRecord, seq uint64) []byte {
	t := append(e.tail[:0], `,"node_seq":`...)
	t = strconv.AppendUint(t, seq, 10)
	t = append(t, '}')
	buf = appendHead(buf, crc32.Update(e.sum, castagnoli, t))
	buf = append(buf, e.buf...)
	buf = append(buf, t...)
	return append(buf, '\n')
}

// appendHead appends the checksum of a line and the space after it.
func appendHead(buf []byte, sum uint32) []byte {
	var head [crcLen + 1]byte
	for i := crcLen - 1; i >= 0; i-- {
		head[i] = hexDigits[sum&0xf]
		sum >>= 4
	}
	head[crcLen] = ' '
	return append(buf, head[:]...)
}

var errBadLine = errors.New("bad line")

// lineBody checks the framing and checksum of one line (with its LF) and returns its JSON.
func lineBody(line []byte) ([]byte, error) {
	if len(line) < crcLen+2 || line[len(line)-1] != '\n' || line[crcLen] != ' ' {
		return nil, fmt.Errorf("%w: malformed", errBadLine)
	}
	var want uint32
	for _, c := range line[:crcLen] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		default:
			return nil, fmt.Errorf("%w: malformed checksum", errBadLine)
		}
		want = want<<4 | uint32(v)
	}
	body := line[crcLen+1 : len(line)-1]
	if crc32.Checksum(body, castagnoli) != want {
		return nil, fmt.Errorf("%w: checksum mismatch", errBadLine)
	}
	return body, nil
}

// decodeRecord decodes one line into a record of node nodeID.
func decodeRecord(line []byte, nodeID string) (fsm.AuditRecord, error) {
	var r fsm.AuditRecord
	body, err := lineBody(line)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%w: checksum matches but JSON does not decode: %v", errBadLine, err)
	}
	if r.NodeSeq == 0 {
		return r, fmt.Errorf("%w: record without NodeSeq", errBadLine)
	}
	if r.NodeID != nodeID {
		return r, fmt.Errorf("record of node %q in the log of node %q", r.NodeID, nodeID)
	}
	return r, nil
}

// readLine reads one line including its LF; at the end of input it returns the unterminated
// rest (possibly empty) with io.EOF. It stops early, returning what it read with errZero,
// once the line turns out to hold a zero byte: such a line cannot check out, and it may be
// the start of megabytes of preallocated zeros.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if bytes.IndexByte(line, 0) >= 0 {
		return line, errZero
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	long := append([]byte(nil), line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = br.ReadSlice('\n')
		long = append(long, line...)
		if bytes.IndexByte(line, 0) >= 0 {
			return long, errZero
		}
	}
	return long, err
}

var errZero = errors.New("zero byte in line")

// zeros is a block of zero bytes to write and compare with.
var zeros [64 << 10]byte

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// nonZeroEnd is the length of b without its trailing zero bytes.
func nonZeroEnd(b []byte) int {
	for len(b) >= 64 && allZero(b[len(b)-64:]) {
		b = b[:len(b)-64]
	}
	return len(bytes.TrimRight(b, "\x00"))
}

// scanResult describes a checked segment.
type scanResult struct {
	count       int
	first, last uint64 // NodeSeq of its first and last record, if count > 0
	size        int64  // bytes of whole, valid records: where the next record goes
	torn        int64  // bytes after them, up to the last non-zero byte (last segment only)
}

// scanSegment checks every line of s. The records end at the end of the file or at a zero
// byte where a line would start: segments are preallocated, and space never written reads
// as zeros. In the last segment a bad line after the records is the torn tail of an
// unfinished write, reported in torn rather than as an error, if it holds a zero byte (part
// of the write never reached the disk) or no valid line follows it.
func scanSegment(s segment, nodeID string, last bool) (scanResult, error) {
	var res scanResult
	f, err := os.Open(s.path)
	if err != nil {
		return res, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	for {
		c, err := br.Peek(1)
		if len(c) == 0 {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return res, fmt.Errorf("audit: read %s: %w", s.path, err)
		}
		if c[0] == 0 {
			// The end of the records. Past it there must be only zeros, unless this is the
			// last segment and a write was cut short.
			end, _, err := scanRest(br, res.size)
			if err != nil {
				return res, fmt.Errorf("audit: read %s: %w", s.path, err)
			}
			if end > res.size && !last {
				return res, fmt.Errorf("%w: %s: data after the end of the records at offset %d", ErrCorrupt, s.path, res.size)
			}
			res.torn = end - res.size
			return res, nil
		}
		line, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errZero) {
			return res, fmt.Errorf("audit: read %s: %w", s.path, err)
		}
		var r fsm.AuditRecord
		derr := fmt.Errorf("%w: holds a zero byte", errBadLine)
		if !errors.Is(err, errZero) {
			r, derr = decodeRecord(line, nodeID)
		}
		if derr != nil && !errors.Is(derr, errBadLine) {
			return res, fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, s.path, res.size, derr)
		}
		if derr != nil {
			if !last {
				return res, fmt.Errorf("%w: %s at offset %d (record %d of the file): %v", ErrCorrupt, s.path, res.size, res.count+1, derr)
			}
			lineEnd := res.size + int64(len(line))
			lineTorn := int64(nonZeroEnd(line)) // before the next read reuses line's memory
			end, valid, verr := scanRest(br, lineEnd)
			if verr != nil {
				return res, fmt.Errorf("audit: read %s: %w", s.path, verr)
			}
			if valid && !errors.Is(err, errZero) {
				return res, fmt.Errorf("%w: %s at offset %d (record %d of the file): %v, and valid records follow it", ErrCorrupt, s.path, res.size, res.count+1, derr)
			}
			res.torn = lineTorn
			if end > lineEnd {
				res.torn = end - res.size
			}
			return res, nil
		}
		if res.count > 0 && r.NodeSeq != res.last+1 {
			return res, fmt.Errorf("%w: %s at offset %d: NodeSeq %d follows %d", ErrCorrupt, s.path, res.size, r.NodeSeq, res.last)
		}
		if res.count == 0 {
			res.first = r.NodeSeq
		}
		res.count++
		res.last = r.NodeSeq
		res.size += int64(len(line))
	}
}

// scanRest reads the rest of br, which starts at offset off of its file. It returns the
// offset just past the last non-zero byte in it (off if there is none), and whether a whole
// line in it checks out.
func scanRest(br *bufio.Reader, off int64) (end int64, valid bool, err error) {
	end = off
	var line []byte // the current line so far
	skip := false   // the current line holds a zero byte: it cannot check out
	for {
		chunk, rerr := br.ReadSlice('\n')
		if n := nonZeroEnd(chunk); n > 0 {
			end = off + int64(n)
		}
		off += int64(len(chunk))
		if !valid && !skip {
			if bytes.IndexByte(chunk, 0) >= 0 {
				skip, line = true, line[:0]
			} else {
				line = append(line, chunk...)
			}
		}
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			if !valid && !skip {
				_, lerr := lineBody(line)
				valid = lerr == nil
			}
			line, skip = line[:0], false
		}
		switch {
		case rerr == nil || errors.Is(rerr, bufio.ErrBufferFull):
		case errors.Is(rerr, io.EOF):
			return end, valid, nil
		default:
			return end, valid, rerr
		}
	}
}

// zeroRange overwrites bytes [from, to) of the file at path with zeros and makes that durable.
func zeroRange(path string, from, to int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := writeZeros(f, from, to); err != nil {
		return err
	}
	return f.Sync()
}

func writeZeros(f *os.File, from, to int64) error {
	for from < to {
		n := min(to-from, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:n], from); err != nil {
			return err
		}
		from += n
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// seqTail is how the JSON of every line ends: the NodeSeq member appendLine adds, then '}'.
var seqTail = []byte(`,"node_seq":`)

// lineSeq checks one line (with its LF) and returns its record's JSON — the record's
// canonical form, fsm.CanonicalAudit — and NodeSeq, read from the end of the JSON without
// decoding the rest: the shipper forwards records without decoding them.
func lineSeq(line []byte) (body []byte, seq uint64, err error) {
	body, err = lineBody(line)
	if err != nil {
		return nil, 0, err
	}
	i := bytes.LastIndex(body, seqTail)
	if i < 0 || body[len(body)-1] != '}' {
		return nil, 0, fmt.Errorf("%w: record without NodeSeq", errBadLine)
	}
	seq, perr := strconv.ParseUint(string(body[i+len(seqTail):len(body)-1]), 10, 64)
	if perr != nil || seq == 0 {
		return nil, 0, fmt.Errorf("%w: bad NodeSeq", errBadLine)
	}
	return body, seq, nil
}
