// Package importer takes a shop's offline and historical orders (a CRM or
// ERP export: NDJSON or CSV) into profiles through the event log, like
// every event: Parse validates a whole upload before anything is applied,
// Importer.Import turns each person's orders into log records of one
// deterministic visitor (Visitor: a name-based UUID of site and customer id,
// else email) holding a purchase event per order (its event id derived
// from the order id, email and customer id on it so the identity links
// follow, the store as the purchase's "store" trait), and appends them;
// the builder applies them exactly once, dropping an order id its visitor
// has already applied, however old (profile/builder, "Order ids"). An
// import id (ID) names the log offsets the upload ended at per partition,
// so Importer.Progress compares them with the builder's committed offsets,
// across restarts, without keeping anything.
//
// Concurrency: an Importer is safe for concurrent use. Orders owns its
// parsed strings and is used by one goroutine.
package importer
