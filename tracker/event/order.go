package event

import "slices"

// OrderKey hashes an order id (or, for a purchase without one, the 16
// bytes of its event id) to 64 bits, FNV-1a: the key orders are counted
// once by, in a visitor's dedup list (profile/builder) and a campaign
// recipient's engagement (profile/campaign). Stored: never change it.
// Among n orders of one visitor or recipient a false match has
// probability ≈ n²/2⁶⁵: none for any shop.
func OrderKey[T ~string | ~[]byte](id T) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// OrderSet is a set of order keys (OrderKey), ascending.
type OrderSet []uint64

// Has reports whether s holds key.
func (s OrderSet) Has(key uint64) bool {
	_, found := slices.BinarySearch(s, key)
	return found
}

// Add returns s with key inserted.
func (s OrderSet) Add(key uint64) OrderSet {
	i, found := slices.BinarySearch(s, key)
	if found {
		return s
	}
	return slices.Insert(s, i, key)
}
