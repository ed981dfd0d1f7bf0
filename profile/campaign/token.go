package campaign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"

	"github.com/affinityhq/affinity/internal/codec"
	"github.com/affinityhq/affinity/internal/quote"
	"github.com/affinityhq/affinity/profile/invalid"
)

// A token is base64url (unpadded) of: version byte = 1 | campaign id
// uvarint | recipient number uvarint | MAC <macLen>, the MAC being the
// first macLen bytes of HMAC-SHA256(site secret, site str | id u64 |
// sent i64 | number u32) (FORMAT.md). 80 bits: a forger's guess passes
// with probability 2⁻⁸⁰.
const (
	tokenVersion = 1
	macLen       = 10
	// MaxTokenLen bounds the text of a token: version, two uvarints of
	// at most 10 and 5 bytes, the MAC.
	MaxTokenLen = (1 + 10 + 5 + macLen + 2) / 3 * 4
)

// Strict: the unused bits of the last character must be zero, so a token
// has one spelling.
var tokenEncoding = base64.RawURLEncoding.Strict()

// AppendToken appends the token of recipient number n of campaign id,
// whose MAC is mac.
func AppendToken(dst []byte, id uint64, n uint32, mac *[macLen]byte) []byte {
	var raw [1 + binary.MaxVarintLen64 + binary.MaxVarintLen32 + macLen]byte
	b := append(raw[:0], tokenVersion)
	b = binary.AppendUvarint(b, id)
	b = binary.AppendUvarint(b, uint64(n))
	b = append(b, mac[:]...)
	return tokenEncoding.AppendEncode(dst, b)
}

// ParseToken decodes a token's campaign id, recipient number and MAC. It
// checks the form only: Store.Resolve checks the MAC. A malformed token
// is an *invalid.Error naming it.
func ParseToken(tok []byte) (id uint64, n uint32, mac [macLen]byte, err error) {
	if len(tok) == 0 || len(tok) > MaxTokenLen {
		return 0, 0, mac, invalid.Errorf("invalid token %s: want 1..%d characters", quote.Value(tok), MaxTokenLen)
	}
	if !codec.IsBase64URL(tok) { // one spelling: no CR or LF the decoder would skip
		return 0, 0, mac, invalid.Errorf("invalid token %s: not base64url", quote.Value(tok))
	}
	var raw [MaxTokenLen]byte
	b, derr := tokenEncoding.AppendDecode(raw[:0], tok)
	if derr != nil {
		return 0, 0, mac, invalid.Errorf("invalid token %s: not base64url", quote.Value(tok))
	}
	if len(b) < 1+1+1+macLen || b[0] != tokenVersion {
		return 0, 0, mac, invalid.Errorf("invalid token %s: not a version %d campaign token", quote.Value(tok), tokenVersion)
	}
	full := len(b)
	b = b[1:]
	id, k := binary.Uvarint(b)
	if k <= 0 || id == 0 {
		return 0, 0, mac, invalid.Errorf("invalid token %s: bad campaign id", quote.Value(tok))
	}
	b = b[k:]
	x, k := binary.Uvarint(b)
	if k <= 0 || x > 0xffffffff {
		return 0, 0, mac, invalid.Errorf("invalid token %s: bad recipient number", quote.Value(tok))
	}
	b = b[k:]
	if len(b) != macLen {
		return 0, 0, mac, invalid.Errorf("invalid token %s: MAC of %d bytes; want %d", quote.Value(tok), len(b), macLen)
	}
	// A uvarint has one shortest form; another spelling of the same
	// numbers would be a second token of the recipient.
	if 1+uvarintLen(id)+uvarintLen(x)+macLen != full {
		return 0, 0, mac, invalid.Errorf("invalid token %s: numbers not in their shortest form", quote.Value(tok))
	}
	copy(mac[:], b)
	return id, uint32(x), mac, nil
}

// signer computes recipients' MACs under one site secret; not safe for
// concurrent use.
type signer struct {
	h   hash.Hash
	in  []byte
	sum []byte
}

func newSigner(secret []byte) *signer {
	return &signer{h: hmac.New(sha256.New, secret)}
}

// mac returns the MAC of recipient n of campaign c.
func (s *signer) mac(c *Campaign, n uint32) (m [macLen]byte) {
	s.in = append(s.in[:0], byte(len(c.Site)))
	s.in = append(s.in, c.Site...)
	s.in = binary.BigEndian.AppendUint64(s.in, c.ID)
	s.in = binary.BigEndian.AppendUint64(s.in, uint64(c.Sent))
	s.in = binary.BigEndian.AppendUint32(s.in, n)
	s.h.Reset()
	s.h.Write(s.in)
	s.sum = s.h.Sum(s.sum[:0])
	copy(m[:], s.sum)
	return m
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}
