package query

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// lineSource is one owner's part of a fan-out, read a line at a time: its
// rows come in the merge order, then possibly a cursor line (more rows
// follow on that owner) or an error line.
type lineSource struct {
	name string // the owner, for messages
	// csv reads CSV records, which span lines where a quoted field holds
	// a line break (RFC 4180), instead of NDJSON lines.
	csv bool
	r   *bufio.Reader
	// row is the current row, nil once the rows ended. It aliases r's
	// buffer (or long): valid until the next call of next.
	row  []byte
	more bool   // the owner ended with a cursor: it has more rows
	fail []byte // the owner's error line, when it ended with one
	long []byte // a row longer than r's buffer
}

// mergeBufSize is the read buffer of a lineSource: rows are far shorter.
const mergeBufSize = 32 << 10

func newLineSource(name string, r io.Reader) *lineSource {
	return &lineSource{name: name, r: bufio.NewReaderSize(r, mergeBufSize)}
}

// next reads the next line: a row into s.row, or the end (s.row nil, with
// s.more or s.fail set by the last line). An error is a stream broken
// mid-way.
func (s *lineSource) next() error {
	s.row = nil
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || s.csv && err == nil && bytes.Count(line, dquote)%2 == 1 {
		// A row longer than the buffer, or a CSV record whose quoted
		// field goes on past the line break: gather it in s.long.
		s.long = append(s.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) || s.csv && err == nil && bytes.Count(s.long, dquote)%2 == 1 {
			line, err = s.r.ReadSlice('\n')
			s.long = append(s.long, line...)
		}
		line = s.long
	}
	switch {
	case err == io.EOF && len(line) == 0:
		return nil
	case err == io.EOF:
		return fmt.Errorf("the stream of %s ended mid-row", s.name)
	case err != nil:
		return fmt.Errorf("cannot read the stream of %s: %w", s.name, err)
	}
	switch {
	case bytes.HasPrefix(line, cursorLinePrefix):
		s.more = true
	case bytes.HasPrefix(line, errorLinePrefix):
		s.fail = append(s.fail[:0], line...)
	default:
		s.row = line
	}
	return nil
}

var (
	dquote           = []byte{'"'}
	cursorLinePrefix = []byte(`{"cursor":`)
	errorLinePrefix  = []byte(`{"error":`)
)

// merger is a k-way merge of the rows of lineSources, each sorted by cmp.
// The owners are few (one per node), so the least row is found by a scan,
// not a heap.
type merger struct {
	srcs []*lineSource
	cmp  func(a, b []byte) int
	// write writes one row to the merged stream (it may reformat it).
	write func(w *bufio.Writer, row []byte) error
	// last is the start of the last row written: what a cursor is made of.
	last []byte
}

// lastRowHead is how much of the last row merge keeps: enough for any
// merge key (an interest row's order key and visitor).
const lastRowHead = 96

// mergeResult is how a merge ended.
type mergeResult struct {
	n    int  // rows written
	more bool // rows remain on some owner after them
	// err is why the merge stopped early: an owner's error line (failLine,
	// then, is that line) or broken stream, or a write to the client
	// (clientGone).
	err        error
	failLine   []byte
	clientGone bool
}

// merge reads the first row of every source, then writes the rows in
// order, at most limit (0: all).
func (m *merger) merge(w *bufio.Writer, limit int) (res mergeResult) {
	if res.err = m.start(); res.err != nil {
		return res
	}
	for {
		least, failed := m.least()
		if failed != nil {
			res.err, res.failLine = fmt.Errorf("%s failed: %s", failed.name, bytes.TrimSpace(failed.fail)), failed.fail
			return res
		}
		if least == nil {
			break
		}
		if limit > 0 && res.n == limit {
			res.more = true
			return res
		}
		if res.err = m.write(w, least.row); res.err != nil {
			res.clientGone = true
			return res
		}
		m.last = append(m.last[:0], least.row[:min(len(least.row), lastRowHead)]...)
		res.n++
		if res.err = least.next(); res.err != nil {
			return res
		}
	}
	for _, s := range m.srcs {
		res.more = res.more || s.more
	}
	return res
}

// start reads the first row of every source.
func (m *merger) start() error {
	for _, s := range m.srcs {
		if err := s.next(); err != nil {
			return err
		}
	}
	return nil
}

// least returns the source whose current row is the least, nil when
// every source ended; or, as failed, a source that ended with an error
// line. The caller moves the source returned on with next.
func (m *merger) least() (least, failed *lineSource) {
	for _, s := range m.srcs {
		if s.fail != nil {
			return nil, s
		}
		if s.row != nil && (least == nil || m.cmp(s.row, least.row) < 0) {
			least = s
		}
	}
	return least, nil
}

// writeRow is a merger's write of a row as it came.
func writeRow(w *bufio.Writer, row []byte) error {
	_, err := w.Write(row)
	return err
}
