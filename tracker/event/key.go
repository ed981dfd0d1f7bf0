package event

// AppendLogKey appends the log key of a visitor's batches: site|visitor, with
// the visitor's 16 raw bytes. Every batch of a visitor has the same key and so
// lands in the same partition, in order.
func AppendLogKey(dst []byte, site string, visitor UUID) []byte {
	dst = append(dst, site...)
	dst = append(dst, '|')
	return append(dst, visitor[:]...)
}
