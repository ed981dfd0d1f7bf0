package catalog

import (
	"bytes"
	"fmt"
	"testing"
)

func benchmarkParse(b *testing.B, f Format, row func(i int) string, header string) {
	var buf bytes.Buffer
	buf.WriteString(header)
	for i := range 10000 {
		buf.WriteString(row(i))
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := Parse(bytes.NewReader(data), f, Options{}, func(int, *Product) error { n++; return nil }); err != nil || n != 10000 {
			b.Fatalf("%d products, error %v", n, err)
		}
	}
}

func BenchmarkParseNDJSON(b *testing.B) {
	benchmarkParse(b, FormatNDJSON, func(i int) string {
		return fmt.Sprintf(`{"id":"%d","brand":"Brand %d","category":"baby/food/formula","age":"0-3","price":%d.5,"name":"Product %d"}`+"\n", i, i%100, i%50, i)
	}, "")
}

func BenchmarkParseCSV(b *testing.B) {
	benchmarkParse(b, FormatCSV, func(i int) string {
		return fmt.Sprintf("%d,Brand %d,baby/food/formula,0-3,%d.5,Product %d\n", i, i%100, i%50, i)
	}, "id,brand,category,age,price,name\n")
}
