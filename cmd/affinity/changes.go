package main

import (
	"context"

	"github.com/affinityhq/affinity/profile/membership"
	"github.com/affinityhq/affinity/storage"
)

// changesSink produces the segments' change records to l (the Kafka
// changes topic of `affinity build`): key membership.AppendChangeKey, value
// the record as JSON (membership.Change.AppendJSON, "seq" its position in
// the segment's feed). The sequencer calls it before it commits the
// records' numbers, so a crash between the two produces them again with the
// same seq: at-least-once, deduplicated by seq.
func changesSink(l storage.Log) func(ctx context.Context, cs []membership.Change) error {
	return func(ctx context.Context, cs []membership.Change) error {
		msgs := make([]storage.Message, len(cs))
		for i := range cs {
			c := &cs[i]
			msgs[i] = storage.Message{Key: membership.AppendChangeKey(nil, c.Site, c.Segment), Value: c.AppendJSON(nil)}
		}
		return l.Append(ctx, msgs)
	}
}
