package audit

import (
	"bufio"
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

// appendLine appends r as one line of the segment format to buf.
func appendLine(buf []byte, r *fsm.AuditRecord) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return buf, err
	}
	sum := crc32.Checksum(body, castagnoli)
	var head [crcLen + 1]byte
	for i := crcLen - 1; i >= 0; i-- {
		head[i] = hexDigits[sum&0xf]
		sum >>= 4
	}
	head[crcLen] = ' '
	buf = append(buf, head[:]...)
	buf = append(buf, body...)
	return append(buf, '\n'), nil
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
// rest (possibly empty) with io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	long := append([]byte(nil), line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = br.ReadSlice('\n')
		long = append(long, line...)
	}
	return long, err
}

// scanResult describes a checked segment.
type scanResult struct {
	count       int
	first, last uint64 // NodeSeq of its first and last record, if count > 0
	size        int64  // bytes of whole, valid records
	torn        int64  // bytes of the torn tail after them (last segment only)
}

// scanSegment checks every line of s. In the last segment a bad or unterminated line that no
// valid line follows is a torn tail: it is reported in torn, not as an error.
func scanSegment(s segment, nodeID string, last bool) (scanResult, error) {
	var res scanResult
	f, err := os.Open(s.path)
	if err != nil {
		return res, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	for {
		line, err := readLine(br)
		if len(line) == 0 && errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return res, fmt.Errorf("audit: read %s: %w", s.path, err)
		}
		r, derr := decodeRecord(line, nodeID)
		if derr != nil && !errors.Is(derr, errBadLine) {
			return res, fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, s.path, res.size, derr)
		}
		if derr != nil {
			if !last {
				return res, fmt.Errorf("%w: %s at offset %d (record %d of the file): %v", ErrCorrupt, s.path, res.size, res.count+1, derr)
			}
			rest, valid, verr := validLineFollows(br)
			if verr != nil {
				return res, fmt.Errorf("audit: read %s: %w", s.path, verr)
			}
			if valid {
				return res, fmt.Errorf("%w: %s at offset %d (record %d of the file): %v, and valid records follow it", ErrCorrupt, s.path, res.size, res.count+1, derr)
			}
			res.torn = int64(len(line)) + rest
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

// validLineFollows reads the rest of br and reports whether any whole line in it checks out,
// and how many bytes it read.
func validLineFollows(br *bufio.Reader) (int64, bool, error) {
	var n int64
	for {
		line, err := readLine(br)
		n += int64(len(line))
		if err != nil && !errors.Is(err, io.EOF) {
			return n, false, err
		}
		if _, derr := lineBody(line); derr == nil {
			return n, true, nil
		}
		if err != nil {
			return n, false, nil
		}
	}
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
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
