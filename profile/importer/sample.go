package importer

import (
	"strconv"
)

// SampleUpload returns an upload of n orders in format f, for tests and
// bench: 4 orders a person (n/4 persons, every other one with a customer
// id), 1 to 3 items each from 500 products, one a day back from
// 2026-01-01, in 48 stores.
func SampleUpload(f Format, n int) []byte {
	var b []byte
	if f == FormatCSV {
		b = append(b, "order_id,email,customer_id,ts,total,store,item_id,qty,price\n"...)
	}
	const day = 24 * 3600 * 1000
	for i := range n {
		person := i / 4
		ts := int64(1767225600000) - int64(i%1000)*day
		items := 1 + i%3
		if f == FormatNDJSON {
			b = append(b, `{"order_id":"O-`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `","email":"person`...)
			b = strconv.AppendInt(b, int64(person), 10)
			b = append(b, `@example.com"`...)
			if person%2 == 0 {
				b = append(b, `,"customer_id":"C`...)
				b = strconv.AppendInt(b, int64(person), 10)
				b = append(b, '"')
			}
			b = append(b, `,"ts":`...)
			b = strconv.AppendInt(b, ts, 10)
			b = append(b, `,"total":`...)
			b = strconv.AppendInt(b, int64(10*items), 10)
			b = append(b, `,"store":"S`...)
			b = strconv.AppendInt(b, int64(i%48), 10)
			b = append(b, `","items":[`...)
			for j := range items {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"id":"p`...)
				b = strconv.AppendInt(b, int64((i*7+j)%500), 10)
				b = append(b, `","qty":1,"price":10}`...)
			}
			b = append(b, "]}\n"...)
			continue
		}
		for j := range items {
			b = append(b, "O-"...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ',')
			if j == 0 {
				b = append(b, "person"...)
				b = strconv.AppendInt(b, int64(person), 10)
				b = append(b, "@example.com,"...)
				if person%2 == 0 {
					b = append(b, 'C')
					b = strconv.AppendInt(b, int64(person), 10)
				}
				b = append(b, ',')
				b = strconv.AppendInt(b, ts, 10)
				b = append(b, ',')
				b = strconv.AppendInt(b, int64(10*items), 10)
				b = append(b, ",S"...)
				b = strconv.AppendInt(b, int64(i%48), 10)
				b = append(b, ',')
			} else {
				b = append(b, ",,,,,"...)
			}
			b = append(b, 'p')
			b = strconv.AppendInt(b, int64((i*7+j)%500), 10)
			b = append(b, ",1,10\n"...)
		}
	}
	return b
}
