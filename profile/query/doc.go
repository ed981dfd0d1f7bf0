// Package query is the query API on the internal listener (profile/api):
// read a visitor's profile, list the visitors above an interest threshold,
// forget a visitor, upload and read the product catalog; and, with
// Options.Segments (profile/membership), define segments and read their
// members, change feeds and webhooks (segments.go; segments_members.go formats
// the rows of membership.Engine.Export, segments_changes.go pages the feed).
//
//	GET    /v1/visitors/{site}/{visitor}[?at=RFC3339]         the profile as JSON
//	DELETE /v1/visitors/{site}/{visitor}                      erase the visitor (204, 404)
//	GET    /v1/people/{site}/{email-or-customer-id}[?at=]     the person's merged profile
//	DELETE /v1/people/{site}/{email-or-customer-id}           erase every linked visitor
//	GET    /v1/interests/{site}/{dimension}/{value}?min=θ[&at=][&limit=N][&cursor=C]
//	                                                          NDJSON rows, best first
//	PUT    /v1/catalog/{site}                                 NDJSON, CSV or YML; all or nothing
//	GET    /v1/catalog/{site}/{id}                            one product as JSON
//	POST   /v1/import/{site}/orders[?format=ndjson|csv]       orders, all or nothing; 202 {"id",…}
//	GET    /v1/import/{site}/orders/{id}                      how far the builder applied them
//	PUT/GET/DELETE /v1/segments/{site}[/{name}]               segment definitions (PUT ?per=person)
//	GET    /v1/segments/{site}/{name}/members                 NDJSON or CSV, streamed
//	GET    /v1/segments/{site}/{name}/changes?after=SEQ       the change feed, paged
//	GET    /v1/segments/{site}/{name}/history?from=&to=&step= the size sampled over time
//	POST   /v1/segments/{site}/_preview[?sample=N]            rule text → count now and a sample, bounded
//	PUT/GET/DELETE /v1/segments/{site}/{name}/webhook         change deliveries
//	GET    /v1/visitors/{site}/{visitor}/segments             the visitor's segments
//	PUT/GET/DELETE /v1/lists/{site}[/{name}]                  static lists (lists.go); ?format=csv|ndjson streams one
//
// Authentication is the api.Server's (bearer token); every refusal is a
// one-line text reason (api.Error). An error holding an *invalid.Error
// (profile/invalid: a bad parameter, rule, catalog row, segment name) is
// the request's fault and answers 400 with its text, `invalid <thing>
// <value>: …`; any other error answers 500.
//
// The interest list is a range scan of the state DB's sorted interest index
// from the order key of the threshold ("score ≥ θ at T" ⇔ "LogG ≥ log2 θ +
// (T − L)/H"), streamed row by row: memory stays flat whatever the result
// size, and no profile is scanned to find the visitors. The email of each
// row is read from its profile.
//
// On a node of a build group (SetCluster) a request about one visitor is
// forwarded to the owner of its partition (route.go), a person is resolved
// over every owner's links and profiles (remote.go), and the members
// export and interest list fan out to every owner and merge in their
// order (fanout.go, merge.go; a by=email export also joins each email's
// members across owners, fanout_email.go, wire formats in FORMAT.md):
// any node answers as one holding every partition would, or 503 naming a
// partition no node serves now.
//
// Concurrency: a Handler is safe for concurrent use; per-request scratch
// space comes from a sync.Pool.
package query
