package defs

import (
	"fmt"

	"github.com/affinityhq/affinity/internal/codec"
)

// The kinds of definitions, the first byte of a record's key.
const (
	KindSegment byte = 'g' // name: the segment; args: per; body: rule text
	KindWebhook byte = 'w' // name: the segment; args: url, secret
	KindList    byte = 'l' // name: the list; args: format; body: the rows
	KindCatalog byte = 'c' // name: the upload id; args: format; body: the products
	// KindCampaignID reserves a campaign id: name a fresh upload id (so
	// compaction keeps every reservation); no body.
	KindCampaignID byte = 'n'
	// KindCampaign is a frozen campaign: name its id (decimal); body the
	// campaign's record (profile/campaign/FORMAT.md).
	KindCampaign byte = 'm'
	// KindErasure records visitors erased (profile/membership erase.go):
	// name a fresh upload id (so compaction keeps every erasure); body the
	// visitors and where their partitions' logs were at the erasure
	// (erasure.go).
	KindErasure byte = 'x'
)

// The operations of a record.
const (
	OpPut    byte = 1 // create or replace (catalog: upsert) the definition
	OpDelete byte = 2 // remove it
	OpChunk  byte = 3 // one chunk of an upload whose head comes later
)

// recordVersion is the version byte of a record value; erasureVersion
// that of an erasure's, whose body carries each visitor's partition and
// offset (an erasure of version 1 carried the visitors' ids alone).
const (
	recordVersion  = 1
	erasureVersion = 2
)

// maxArgs bounds the args of a record; no kind has more than two.
const maxArgs = 4

// Record is one definition write on the topic. Decoded records view the
// bytes they were decoded from.
type Record struct {
	Kind       byte
	Op         byte
	Site, Name string
	// Args are the write's parameters besides its body (see the kinds).
	Args []string
	// Body is the definition's text or upload; empty in a head record
	// whose body came in Chunks chunk records.
	Body []byte

	// At is when the write was made (Unix ms, the writer's clock): every
	// node stores it as the definition's created or updated time.
	At int64

	// Origin and Request identify the node and the request that wrote
	// the record: the consumer of that node answers its Submit.
	Origin, Request uint64
	// Upload and Chunks name the chunk records of a head (Chunks > 0);
	// Index is a chunk record's place among them.
	Upload uint64
	Chunks int
	Index  int

	// Offset is where the consumer read the record on the topic (a
	// head's own offset); not encoded.
	Offset int64

	// Version is the value's version byte, which says how an erasure's
	// body is laid out (Erasures): Decode sets it; AppendValue writes
	// it, or when 0 the kind's current one.
	Version byte
}

// version returns the version byte AppendValue writes.
func (r *Record) version() byte {
	switch {
	case r.Version != 0:
		return r.Version
	case r.Kind == KindErasure:
		return erasureVersion
	}
	return recordVersion
}

func checkKind(k byte) bool {
	return k == KindSegment || k == KindWebhook || k == KindList || k == KindCatalog || k == KindCampaignID || k == KindCampaign || k == KindErasure
}

// AppendKey appends the record's key: kind | site str | name str, and for
// a chunk record upload uvarint | index uvarint (so chunks of different
// uploads never replace each other under compaction).
func (r *Record) AppendKey(dst []byte) []byte {
	dst = append(dst, r.Kind)
	dst = codec.AppendString(dst, r.Site)
	dst = codec.AppendString(dst, r.Name)
	if r.Op == OpChunk {
		dst = codec.AppendUvarint(dst, r.Upload)
		dst = codec.AppendUvarint(dst, uint64(r.Index))
	}
	return dst
}

// AppendValue appends the record's value:
//
//	version 1 (2: an erasure) | op byte | at varint ms | origin uvarint | request uvarint | n uvarint, n × arg str |
//	upload uvarint | chunks uvarint | index uvarint | body bytes
func (r *Record) AppendValue(dst []byte) []byte {
	dst = append(dst, r.version(), r.Op)
	dst = codec.AppendVarint(dst, r.At)
	dst = codec.AppendUvarint(dst, r.Origin)
	dst = codec.AppendUvarint(dst, r.Request)
	dst = codec.AppendUvarint(dst, uint64(len(r.Args)))
	for _, a := range r.Args {
		dst = codec.AppendString(dst, a)
	}
	dst = codec.AppendUvarint(dst, r.Upload)
	dst = codec.AppendUvarint(dst, uint64(r.Chunks))
	dst = codec.AppendUvarint(dst, uint64(r.Index))
	return codec.AppendString(dst, string(r.Body))
}

// Decode decodes a record from its key and value; the record views both.
func (r *Record) Decode(key, value []byte) error {
	*r = Record{}
	kr := codec.NewReader("definition key", key, 0)
	r.Kind = kr.Byte()
	if kr.Err() == nil && !checkKind(r.Kind) {
		kr.FailAt(0, fmt.Sprintf("unknown kind %q", r.Kind))
	}
	r.Site = kr.String()
	r.Name = kr.String()
	var keyUpload, keyIndex uint64
	chunkKey := kr.Left() > 0
	if chunkKey {
		keyUpload, keyIndex = kr.Uvarint(), kr.Uvarint()
	}
	if err := kr.End(); err != nil {
		return err
	}

	vr := codec.NewReader("definition record", value, 0)
	r.Version = vr.Byte()
	if vr.Err() == nil && r.Version != recordVersion && (r.Kind != KindErasure || r.Version != erasureVersion) {
		vr.FailAt(0, fmt.Sprintf("version %d; this build reads %d, and %d of an erasure", r.Version, recordVersion, erasureVersion))
	}
	r.Op = vr.Byte()
	if vr.Err() == nil && (r.Op < OpPut || r.Op > OpChunk) {
		vr.FailAt(1, fmt.Sprintf("unknown op %d", r.Op))
	}
	r.At = vr.Varint()
	r.Origin = vr.Uvarint()
	r.Request = vr.Uvarint()
	n := vr.Count(1)
	if vr.Err() == nil && n > maxArgs {
		vr.Failf("%d args: at most %d", n, maxArgs)
	}
	if vr.Err() == nil && n > 0 {
		r.Args = make([]string, n)
		for i := range r.Args {
			r.Args[i] = vr.String()
		}
	}
	r.Upload = vr.Uvarint()
	chunks, index := vr.Uvarint(), vr.Uvarint()
	if vr.Err() == nil && (chunks > maxChunks || index >= maxChunks) {
		vr.Failf("chunks %d, index %d: at most %d chunks", chunks, index, maxChunks)
	}
	r.Chunks, r.Index = int(chunks), int(index)
	r.Body = vr.Bytes()
	if err := vr.End(); err != nil {
		return err
	}
	switch {
	case chunkKey != (r.Op == OpChunk):
		return fmt.Errorf("cannot decode definition record: op %d under a key %s chunk fields", r.Op, map[bool]string{true: "with", false: "without"}[chunkKey])
	case chunkKey && (keyUpload != r.Upload || keyIndex != index):
		return fmt.Errorf("cannot decode definition record: chunk %d of upload %d under the key of chunk %d of upload %d", index, r.Upload, keyIndex, keyUpload)
	case r.Op == OpChunk && index >= chunks:
		return fmt.Errorf("cannot decode definition record: chunk %d of %d", index, chunks)
	case r.Op != OpPut && r.Op != OpChunk && (r.Chunks != 0 || len(r.Body) != 0):
		return fmt.Errorf("cannot decode definition record: op %d with a body", r.Op)
	case r.Op == OpPut && r.Chunks > 0 && len(r.Body) != 0:
		return fmt.Errorf("cannot decode definition record: a head of %d chunks with a body of its own", r.Chunks)
	}
	return nil
}

// maxChunks bounds the chunks of one upload: 64 Ki chunks of the
// smallest chunk size are far above the API's body limits.
const maxChunks = 1 << 16

// keyString returns the identity of r's definition (its key without the
// chunk fields), for maps.
func (r *Record) keyString() string {
	k := *r
	k.Op = OpPut
	return string(k.AppendKey(nil))
}
