package event

import (
	"encoding/base64"
	"testing"
)

var benchFixtures = []struct{ name, file string }{
	{"10events", "batch10.json"},
	{"100events", "batch100.json"},
}

func BenchmarkDecodeBatch(b *testing.B) {
	for _, bf := range benchFixtures {
		b.Run(bf.name, func(b *testing.B) {
			data := readFixture(b, bf.file)
			d := NewDecoder(DefaultOptions())
			var batch Batch
			_ = d.DecodeBatch(&batch, data, testNow) // grow the buffers: measure the steady state
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.DecodeBatch(&batch, data, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeBase64Batch(b *testing.B) {
	data := readFixture(b, "batch10.json")
	param := []byte(base64.RawURLEncoding.EncodeToString(data))
	d := NewDecoder(DefaultOptions())
	var batch Batch
	_ = d.DecodeBase64Batch(&batch, param, testNow) // grow the buffers: measure the steady state
	b.SetBytes(int64(len(param)))
	b.ReportAllocs()
	for b.Loop() {
		if err := d.DecodeBase64Batch(&batch, param, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	for _, bf := range benchFixtures {
		b.Run(bf.name, func(b *testing.B) {
			batch := mustDecode(b, readFixture(b, bf.file))
			buf := AppendBatch(nil, batch)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendBatch(buf[:0], batch)
			}
		})
	}
}

func BenchmarkDecodeRecord(b *testing.B) {
	for _, bf := range benchFixtures {
		b.Run(bf.name, func(b *testing.B) {
			record := AppendBatch(nil, mustDecode(b, readFixture(b, bf.file)))
			var batch Batch
			_ = DecodeRecord(&batch, record) // grow the buffers: measure the steady state
			b.SetBytes(int64(len(record)))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeRecord(&batch, record); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
