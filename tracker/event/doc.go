// Package event is the event contract between browsers, the collector and the
// profile builder: the Event and Batch types, decoding the JSON batch the
// snippet sends (Decoder), and the compact binary record the collector
// appends to the log and the builder reads back (AppendBatch, DecodeRecord;
// the format is in FORMAT.md).
//
// The JSON batch, sent as the body of POST /v1/events or base64url-encoded
// in the d parameter of GET /v1/p.gif, is
//
//	{"site":"<key>","v":"<visitor uuid>","events":[{
//	  "id":"<uuid>","t":"pageview|view|cart|uncart|purchase|identify|custom","ts":<Unix ms>,
//	  "name":"<custom event's name>",
//	  "token":"<identify: the aff_t a campaign click added to the landing URL>",
//	  "product":{"id":"…","brand":"…","category":"a/b/c","age":"0-3","price":12.5,"qty":1},
//	  "order":{"id":"…","total":25,"items":[<product>, …]},
//	  "email":"…","customer_id":"…","traits":{"birthday":"1990-05-12", …},"url":"…"}, …]}
//
// A batch is accepted or refused whole; a refusal is a *ValidationError whose
// Reason is a metrics label and whose Error() is the one-line 4xx body. Keys
// the contract does not define are skipped (forward compatibility); null is
// "not given" for the optional fields.
//
// # Ownership
//
// A Batch owns an arena (Batch.Arena) and every string of the Batch and its
// Events views it: DecodeBatch and DecodeRecord copy the bytes they keep, so
// the caller may reuse its input as soon as they return (a fasthttp request
// body, a log reader's buffer). Those strings are valid until the Batch is
// Reset or decoded into again; Clone what must outlive that.
//
// # Concurrency
//
// A Decoder and a Batch are each used by one goroutine at a time; keep them
// per worker or in sync.Pools. Reused, they decode without allocating once
// grown to the largest batch seen. AppendBatch and DecodeRecord are plain
// functions, safe for concurrent use on distinct Batches.
package event
