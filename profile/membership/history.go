package membership

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/tracker/event"
)

// The size history of a segment: its size sampled every
// Options.HistoryStep (a minute) and thinned as it ages, so that a year of
// it is a few thousand points (layout in storage/state/FORMAT.md, section
// "Segments"):
//
//	age ≤ 1 day     every sample
//	age ≤ 30 days   the last sample of each hour
//	older           the last sample of each day (UTC)
const (
	historyFine   = 24 * time.Hour
	historyHourly = 30 * 24 * time.Hour
)

// sizes key: 'S' | site str | name str | at u64 ms.
func appendSizeKey(dst []byte, site, name string, at int64) []byte {
	return binary.BigEndian.AppendUint64(appendSegKey(dst, prefixSizes, site, name), uint64(max(at, 0)))
}

// sizes value: version 1 | size uvarint; or, counted by partition,
// version 2 | size uvarint | n uvarint | n × (partition uvarint, size uvarint).
const sizeByPartVersion = 2

func appendSizeValue(dst []byte, size int, parts []PartSize) []byte {
	if parts == nil {
		return codec.AppendUvarint(append(dst, valueVersion), uint64(size))
	}
	dst = codec.AppendUvarint(append(dst, sizeByPartVersion), uint64(size))
	dst = codec.AppendUvarint(dst, uint64(len(parts)))
	for _, p := range parts {
		dst = codec.AppendUvarint(dst, uint64(p.Partition))
		dst = codec.AppendUvarint(dst, uint64(p.Size))
	}
	return dst
}

// decodeSizeValue reads a sizes value; parts is nil for version 1.
func decodeSizeValue(v []byte, parts []PartSize) (int, []PartSize, error) {
	r := newReader("segment size", v)
	ver := r.Byte()
	if r.Err() == nil && ver != valueVersion && ver != sizeByPartVersion {
		r.FailAt(0, fmt.Sprintf("version %d; this build reads %d and %d", ver, valueVersion, sizeByPartVersion))
	}
	n := r.Uvarint()
	parts = parts[:0]
	if ver == sizeByPartVersion {
		for range r.Count(2) {
			p, size := r.Uvarint(), r.Uvarint()
			if r.Err() == nil && p > math.MaxInt32 {
				r.Failf("partition %d; want at most %d", p, math.MaxInt32)
			}
			parts = append(parts, PartSize{Partition: int(p), Size: int(size)})
		}
		if parts == nil {
			parts = []PartSize{}
		}
	} else {
		parts = nil
	}
	return int(n), parts, end(&r)
}

// partSampler is what SampleByPartition sets.
type partSampler struct {
	owned     func() []int
	partition func(site string, visitor event.UUID) int
}

// SampleByPartition makes each later sample of a segment's size count the
// members of the partitions owned returns then, each partition on its own
// (partition of the member's visitor, or of a person's PersonID: its
// evaluating partition, once restored): a node of a build group, whose
// history the group sums over the owners' shares.
func (e *Engine) SampleByPartition(owned func() []int, partition func(site string, visitor event.UUID) int) {
	e.sampler.Store(&partSampler{owned: owned, partition: partition})
}

// PartSize is the members of a segment on one partition in a sample.
type PartSize struct{ Partition, Size int }

// sizeByPart counts the members of a segment on each of the partitions
// owned (SampleByPartition).
func (e *Engine) sizeByPart(site, name string, owned []int, partition func(string, event.UUID) int) (int, []PartSize, error) {
	parts := make([]PartSize, len(owned))
	at := map[int]int{}
	for i, p := range owned {
		parts[i].Partition = p
		at[p] = i
	}
	total, err := e.SizeOf(site, name, func(v event.UUID) bool {
		i, ok := at[partition(site, v)]
		if ok {
			parts[i].Size++
		}
		return ok
	})
	return total, parts, err
}

// segmentNames returns the site and name of every segment, by site.
func (e *Engine) segmentNames() ([][2]string, error) {
	var segs [][2]string
	var perr error
	err := e.db.ScanExt([]byte{prefixDef}, func(key, _ []byte) bool {
		r := newReader("segment key", key[1:])
		site, name := str(&r), str(&r)
		if perr = end(&r); perr != nil {
			perr = fmt.Errorf("segment key %x: %w", key, perr)
			return false
		}
		segs = append(segs, [2]string{site, name})
		return true
	})
	if err == nil {
		err = perr
	}
	return segs, err
}

// RecordSizes samples the size of every segment of every site at the
// clock's now, in one commit, and thins the history of each segment once
// an hour. It returns how many segments it sampled. The history loop calls
// it every Options.HistoryStep; tests driving the clock may too.
func (e *Engine) RecordSizes() (int, error) {
	now := e.now()
	segs, err := e.segmentNames()
	if err != nil {
		return 0, fmt.Errorf("cannot list the segments to sample: %w", err)
	}
	b := e.db.NewBatch()
	var (
		key, val []byte
		owned    []int
	)
	byPart := e.sampler.Load()
	if byPart != nil {
		owned = slices.Sorted(slices.Values(byPart.owned()))
	}
	for _, s := range segs {
		// A count of member keys: it reads keys only, in its own snapshot,
		// beside the builder rather than in its path.
		var (
			n     int
			parts []PartSize
			err   error
		)
		if d, ok, derr := e.Definition(s[0], s[1]); byPart != nil && derr == nil && ok {
			own := owned
			if d.Per == PerPerson {
				// A person's partition is its evaluating one (the
				// partition of its PersonID), counted once restored.
				own = slices.DeleteFunc(slices.Clone(owned), func(p int) bool { return !e.PersonsReady(p) })
			}
			n, parts, err = e.sizeByPart(s[0], s[1], own, byPart.partition)
		} else {
			n, err = e.Size(s[0], s[1])
		}
		if err != nil {
			return 0, fmt.Errorf("cannot sample the size of segment %q of site %q: %w", s[1], s[0], err)
		}
		key = appendSizeKey(key[:0], s[0], s[1], now)
		val = appendSizeValue(val[:0], n, parts)
		if err := b.ExtSet(key, val); err != nil {
			return 0, err
		}
	}
	if err := b.Commit(); err != nil {
		return 0, fmt.Errorf("cannot store the segment sizes: %w", err)
	}
	if hour := now / time.Hour.Milliseconds(); hour != e.lastThin.Load() {
		e.lastThin.Store(hour)
		for _, s := range segs {
			if err := e.thinHistory(s[0], s[1], now); err != nil {
				return len(segs), err
			}
		}
	}
	return len(segs), nil
}

// historyGrain returns the width (ms) of the bucket a sample taken at at
// is kept one of when the history is thinned at now: 0 while it is fresh
// (every sample kept), else an hour or a day.
func historyGrain(at, now int64) int64 {
	switch age := now - at; {
	case age <= historyFine.Milliseconds():
		return 0
	case age <= historyHourly.Milliseconds():
		return time.Hour.Milliseconds()
	default:
		return (24 * time.Hour).Milliseconds()
	}
}

// thinHistory deletes the samples of a segment that are not the last of
// their bucket (historyGrain). Only samples older than a day change, and
// those already thinned are a few hundred.
func (e *Engine) thinHistory(site, name string, now int64) error {
	prefix := appendSegKey(nil, prefixSizes, site, name)
	var (
		dels    [][]byte
		prev    []byte
		prevAt  int64
		derr    error
		horizon = now - historyFine.Milliseconds()
	)
	err := e.db.ScanExt(prefix, func(key, _ []byte) bool {
		if len(key) != len(prefix)+8 {
			derr = fmt.Errorf("BUG: size key %x has a bad length", key)
			return false
		}
		at := int64(binary.BigEndian.Uint64(key[len(prefix):]))
		// A sample is dropped when the next one is in its bucket.
		if g := historyGrain(prevAt, now); prev != nil && g > 0 && prevAt/g == at/g {
			dels = append(dels, prev)
		}
		prev, prevAt = append([]byte(nil), key...), at
		return at < horizon
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("cannot thin the size history of segment %q of site %q: %w", name, site, err)
	}
	b := e.db.NewBatch()
	for _, k := range dels {
		if err := b.ExtDelete(k); err != nil {
			return err
		}
		if b.Full() {
			if err := b.Commit(); err != nil {
				return fmt.Errorf("cannot thin the size history of segment %q of site %q: %w", name, site, err)
			}
			b.Reset()
		}
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("cannot thin the size history of segment %q of site %q: %w", name, site, err)
	}
	return nil
}

// SizePoint is one sample of a segment's size.
type SizePoint struct {
	At   int64 // Unix ms
	Size int
	// Parts is the size on each partition the node owned at At, when it
	// counted by partition (SampleByPartition); nil otherwise. Valid only
	// during History's call.
	Parts []PartSize
}

// History calls fn with the samples of a segment's size taken in
// [from, to] (Unix ms), oldest first; with step > 0 only the last sample of
// each step from from, until fn returns false.
func (e *Engine) History(site, name string, from, to, step int64, fn func(p SizePoint) bool) error {
	if err := checkSite(site); err != nil {
		return err
	}
	prefix := appendSegKey(nil, prefixSizes, site, name)
	var after []byte
	if from > 0 {
		after = appendSizeKey(nil, site, name, from-1)
	}
	var (
		pending SizePoint
		have    bool
		stopped bool
		derr    error
	)
	err := e.db.ScanExtFrom(prefix, after, func(key, val []byte) bool {
		if len(key) != len(prefix)+8 {
			derr = fmt.Errorf("BUG: size key %x has a bad length", key)
			return false
		}
		at := int64(binary.BigEndian.Uint64(key[len(prefix):]))
		if at < from {
			return true
		}
		if at > to {
			return false
		}
		n, parts, err := decodeSizeValue(val, nil)
		if err != nil {
			derr = fmt.Errorf("size of segment %q of site %q at %d: %w", name, site, at, err)
			return false
		}
		p := SizePoint{At: at, Size: n, Parts: parts}
		if step <= 0 {
			stopped = !fn(p)
			return !stopped
		}
		if have && (at-from)/step != (pending.At-from)/step {
			if stopped = !fn(pending); stopped {
				return false
			}
		}
		pending, have = p, true
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("cannot read the size history of segment %q of site %q: %w", name, site, err)
	}
	if have && !stopped {
		fn(pending)
	}
	return nil
}

// historyLoop samples the sizes every Options.HistoryStep.
func (e *Engine) historyLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.opts.HistoryStep)
	defer t.Stop()
	for {
		if _, err := e.RecordSizes(); err != nil && e.ctx.Err() == nil {
			e.m.errors.Inc()
			e.logf("membership: %s", err)
		}
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
	}
}
