// Package tracker is the public side of affinity: the fasthttp collector that
// browsers post event batches to.
//
// A request flows decode → validate → enrich → encode → log.Append, and is
// answered 202 only after the event log has durably acknowledged the whole
// batch; every refusal is a 4xx (or a 503 when the log cannot take more) with
// a one-line reason in the body. Nothing of a refused batch is stored.
//
// Concurrency and ownership: a Collector is safe for concurrent use. Per
// request it takes a pooled requestCtx (decoder, batch, record buffer); every
// byte that the log may keep is handed over through storage.Log.Append, which
// does not retain it, so the context goes back to the pool as soon as the
// handler returns. A Site with a Rate has its own token bucket
// (ratelimit.go), one atomic word taken with a CAS: a site over its rate is
// refused with 429 before its batch reaches the log, and costs other sites
// no lock.
package tracker
