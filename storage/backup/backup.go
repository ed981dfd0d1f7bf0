package backup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"
)

// Magic opens every backup file.
const Magic = "affinity backup\n"

// Version is the format version this build writes and reads.
const Version = 1

// Section names what a section holds.
type Section byte

const (
	// State is the state database (<data>/state): profiles, indexes,
	// segments and the log offsets they cover.
	State Section = 'S'
	// Log is the embedded event log (<data>/log), copied after State.
	Log Section = 'L'

	trailer = 'E'
)

func (s Section) String() string {
	switch s {
	case State:
		return "state"
	case Log:
		return "log"
	}
	return fmt.Sprintf("section %q", byte(s))
}

const (
	headerLen = len(Magic) + 1 + 8
	// maxChunk bounds one chunk of a section, so that a reader never
	// allocates more for a corrupt length.
	maxChunk = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Writer writes a backup file: the header, then sections, then the
// trailer on Close. Not safe for concurrent use.
type Writer struct {
	bw   *bufio.Writer
	file hash.Hash32 // every byte written so far
	info Info
	err  error
}

// NewWriter writes the header to w, stamped with created.
func NewWriter(w io.Writer, created time.Time) (*Writer, error) {
	bw := &Writer{file: crc32.New(castagnoli), info: Info{Created: time.UnixMilli(created.UnixMilli())}}
	bw.bw = bufio.NewWriterSize(io.MultiWriter(w, bw.file), 256<<10)
	hdr := make([]byte, 0, headerLen)
	hdr = append(hdr, Magic...)
	hdr = append(hdr, Version)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(created.UnixMilli()))
	if _, err := bw.bw.Write(hdr); err != nil {
		return nil, fmt.Errorf("cannot write backup header: %w", err)
	}
	return bw, nil
}

// Section writes one section: dump writes its key-value records (Dump
// does, for a Badger database) and returns how many it wrote.
func (w *Writer) Section(s Section, dump func(w io.Writer) (keys int64, err error)) error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.WriteByte(byte(s)); err != nil {
		w.err = fmt.Errorf("cannot write backup section %s: %w", s, err)
		return w.err
	}
	cw := &chunkWriter{w: w.bw, crc: crc32.New(castagnoli)}
	buf := bufio.NewWriterSize(cw, 64<<10)
	keys, err := dump(buf)
	if err == nil {
		err = buf.Flush()
	}
	if err == nil {
		var tail [4 + 8 + 4]byte // end chunk, keys, crc
		binary.BigEndian.PutUint64(tail[4:], uint64(keys))
		binary.BigEndian.PutUint32(tail[12:], cw.crc.Sum32())
		_, err = w.bw.Write(tail[:])
	}
	if err != nil {
		w.err = fmt.Errorf("cannot write backup section %s: %w", s, err)
		return w.err
	}
	w.info.Sections = append(w.info.Sections, SectionInfo{Section: s, Keys: keys, Bytes: cw.n})
	return nil
}

// Info describes what was written so far.
func (w *Writer) Info() Info { return w.info }

// Close writes the trailer, with the checksum of the whole file, and
// flushes. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.WriteByte(trailer); err != nil {
		return fmt.Errorf("cannot write backup trailer: %w", err)
	}
	if err := w.bw.WriteByte(byte(len(w.info.Sections))); err != nil {
		return fmt.Errorf("cannot write backup trailer: %w", err)
	}
	if err := w.bw.Flush(); err != nil { // file now holds every byte the checksum covers
		return fmt.Errorf("cannot write backup: %w", err)
	}
	if err := binary.Write(w.bw, binary.BigEndian, w.file.Sum32()); err != nil {
		return fmt.Errorf("cannot write backup trailer: %w", err)
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("cannot write backup: %w", err)
	}
	w.err = errors.New("backup writer is closed")
	return nil
}

// chunkWriter frames a section's bytes as length-prefixed chunks.
type chunkWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
	hdr [4]byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxChunk)]
		binary.BigEndian.PutUint32(c.hdr[:], uint32(len(chunk)))
		if _, err := c.w.Write(c.hdr[:]); err != nil {
			return n, err
		}
		if _, err := c.w.Write(chunk); err != nil {
			return n, err
		}
		c.crc.Write(chunk)
		c.n += int64(len(chunk))
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Info describes a backup file.
type Info struct {
	Created  time.Time
	Sections []SectionInfo
}

// SectionInfo describes one section of a backup file.
type SectionInfo struct {
	Section Section
	Keys    int64
	Bytes   int64 // of its key-value records
}

// Has reports whether the file holds section s.
func (i *Info) Has(s Section) bool {
	for _, si := range i.Sections {
		if si.Section == s {
			return true
		}
	}
	return false
}

// ErrCorrupt is wrapped by every error about the content of a backup
// file (truncated, bad checksum, unknown version or section).
var ErrCorrupt = errors.New("backup file is truncated or corrupt")

// Read reads a backup file from r and calls load with each section's
// key-value records, which load must read to their end (io.EOF). The
// section's checksum is checked before load sees io.EOF, the file's at the
// end: run it once with a load that discards (Verify) before loading for
// real, so that a bad file is refused before anything is written.
func Read(r io.Reader, load func(s Section, r io.Reader) error) (Info, error) {
	var info Info
	br := &hashReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(castagnoli)}
	var hdr [headerLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return info, corrupt("cannot read header", err)
	}
	if string(hdr[:len(Magic)]) != Magic {
		return info, fmt.Errorf("not an affinity backup: it starts with %q: %w", hdr[:len(Magic)], ErrCorrupt)
	}
	if v := hdr[len(Magic)]; v != Version {
		return info, fmt.Errorf("backup format version %d; this build reads version %d: %w", v, Version, ErrCorrupt)
	}
	info.Created = time.UnixMilli(int64(binary.BigEndian.Uint64(hdr[len(Magic)+1:])))
	for {
		kind, err := br.ReadByte()
		if err != nil {
			return info, corrupt("no trailer", err)
		}
		s := Section(kind)
		switch s {
		case State, Log:
		case trailer:
			n, err := br.ReadByte()
			if err != nil {
				return info, corrupt("cannot read trailer", err)
			}
			got := br.crc.Sum32() // of every byte before the checksum
			var sum [4]byte
			if _, err := io.ReadFull(br, sum[:]); err != nil {
				return info, corrupt("cannot read trailer", err)
			}
			if want := binary.BigEndian.Uint32(sum[:]); got != want {
				return info, fmt.Errorf("file checksum %08x, the trailer says %08x: %w", got, want, ErrCorrupt)
			}
			if int(n) != len(info.Sections) {
				return info, fmt.Errorf("trailer counts %d sections, the file has %d: %w", n, len(info.Sections), ErrCorrupt)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				return info, fmt.Errorf("bytes after the trailer: %w", ErrCorrupt)
			}
			return info, nil
		default:
			return info, fmt.Errorf("unknown section %q: %w", kind, ErrCorrupt)
		}
		cr := &chunkReader{r: br, crc: crc32.New(castagnoli), s: s}
		if err := load(s, cr); err != nil {
			if cr.err != nil {
				return info, cr.err
			}
			return info, fmt.Errorf("cannot load section %s: %w", s, err)
		}
		if !cr.done {
			return info, fmt.Errorf("BUG: section %s not read to its end", s)
		}
		info.Sections = append(info.Sections, SectionInfo{Section: s, Keys: cr.keys, Bytes: cr.n})
	}
}

func corrupt(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%s: %w: %w", what, ErrCorrupt, err)
}

// hashReader checksums every byte it returns.
type hashReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.crc.Write(p[:n])
	return n, err
}

func (h *hashReader) ReadByte() (byte, error) {
	b, err := h.r.ReadByte()
	if err == nil {
		h.crc.Write([]byte{b})
	}
	return b, err
}

// chunkReader reads one section's chunks and checks its checksum at its end.
type chunkReader struct {
	r    *hashReader
	crc  hash.Hash32
	s    Section
	left int // bytes left in the current chunk
	n    int64
	keys int64
	done bool
	err  error // sticky
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.done {
		return 0, io.EOF
	}
	for c.left == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			c.err = corrupt("cannot read section "+c.s.String(), err)
			return 0, c.err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxChunk {
			c.err = fmt.Errorf("section %s: chunk of %d bytes, at most %d: %w", c.s, n, maxChunk, ErrCorrupt)
			return 0, c.err
		}
		if n == 0 {
			var tail [8 + 4]byte
			if _, err := io.ReadFull(c.r, tail[:]); err != nil {
				c.err = corrupt("cannot read the end of section "+c.s.String(), err)
				return 0, c.err
			}
			if got, want := c.crc.Sum32(), binary.BigEndian.Uint32(tail[8:]); got != want {
				c.err = fmt.Errorf("section %s: checksum %08x, the file says %08x: %w", c.s, got, want, ErrCorrupt)
				return 0, c.err
			}
			c.keys = int64(binary.BigEndian.Uint64(tail[:8]))
			c.done = true
			return 0, io.EOF
		}
		c.left = int(n)
	}
	k, err := c.r.Read(p[:min(len(p), c.left)])
	c.crc.Write(p[:k])
	c.left -= k
	c.n += int64(k)
	if err != nil {
		c.err = corrupt("cannot read section "+c.s.String(), err)
		return k, c.err
	}
	return k, nil
}
