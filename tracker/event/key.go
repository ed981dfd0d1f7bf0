package event

// AppendLogKey appends the log key of a visitor's batches to dst: the site,
// '|', and the visitor in canonical UUID form (UUID.Append), e.g.
// "demo|0b9e6c1a-3c1f-4c47-9d0e-5b6a2f1e7d3c" — text, so that Kafka tools,
// Connect sinks and ksqlDB show it as it is. Every batch of a visitor has the
// same key and so lands in the same partition, in order.
//
// Nothing reads the key back: the builder takes site and visitor from the
// record. Records written by older builds under the binary key (site, '|',
// the visitor's 16 raw bytes) therefore stay readable; see storage/FORMAT.md
// for what the change of partition means on upgrade.
func AppendLogKey(dst []byte, site string, visitor UUID) []byte {
	dst = append(dst, site...)
	dst = append(dst, '|')
	return visitor.Append(dst)
}
