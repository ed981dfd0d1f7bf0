package defs

import (
	"bytes"
	"testing"
)

// An upload keeps its chunks up to the first ones that hold what Enough
// asks for and counts the later ones as dropped, in whatever order they
// come; without Enough it keeps them all. assemble then gives the kept
// prefix, and refuses an upload with a chunk missing.
func TestUploadKeep(t *testing.T) {
	body := []byte("0123456789abcdefghij") // 5 chunks of 4 bytes
	const size = 4
	atLeast := func(n int) func(byte, []byte) bool {
		return func(_ byte, p []byte) bool { return len(p) >= n }
	}
	f := func(name string, order []int, enough func(byte, []byte) bool, want string) {
		t.Helper()
		l := &Log{uploads: map[uint64]*upload{}}
		u := &upload{chunks: make([][]byte, len(body)/size)}
		l.uploads[1] = u
		for _, i := range order {
			u.keep(KindCampaign, i, body[i*size:(i+1)*size], enough)
		}
		got, err := l.assemble(&Record{Kind: KindCampaign, Upload: 1, Chunks: len(u.chunks)})
		if want == "refused" {
			if err == nil {
				t.Errorf("%s: assembled %q; want refused", name, got)
			}
			return
		}
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
		}
	}
	f("no Enough", []int{0, 1, 2, 3, 4}, nil, string(body))
	f("enough in the first chunk", []int{0, 1, 2, 3, 4}, atLeast(3), "0123")
	f("enough after two chunks", []int{0, 1, 2, 3, 4}, atLeast(5), "01234567")
	f("never enough", []int{0, 1, 2, 3, 4}, atLeast(100), string(body))
	f("a later chunk first", []int{2, 0, 1, 3, 4}, atLeast(5), "0123456789ab")
	f("the first chunk last", []int{1, 2, 3, 4, 0}, atLeast(3), string(body))
	f("a dropped chunk missing", []int{0, 1, 2, 4}, atLeast(3), "refused")
	f("a kept chunk missing", []int{1, 2, 3, 4}, atLeast(3), "refused")
}
