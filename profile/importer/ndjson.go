package importer

import (
	"bytes"

	"github.com/valyala/fastjson"

	"github.com/affinityhq/affinity/internal/quote"
)

// parseNDJSON parses one JSON object per line; blank lines are skipped.
// Members (null is the same as absent; others are ignored): order_id
// (string or number), email, customer_id (string or number), ts (Unix ms
// as a number or string, or an RFC 3339 string), total (number or numeric
// string), store (string or number), items (a list of {id, qty, price}).
func (p *rowParser) parseNDJSON(body []byte) error {
	var jp fastjson.Parser
	var text []byte
	for len(body) > 0 {
		p.line++
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if p.line == 1 {
			line = bytes.TrimPrefix(line, utf8BOM)
		}
		if len(trimSpace(line)) == 0 {
			continue
		}
		v, err := jp.ParseBytes(line)
		if err != nil {
			return p.lineErr("invalid JSON: %s", quote.OneLine(err.Error()))
		}
		obj, err := v.Object()
		if err != nil {
			return p.lineErr("want a JSON object per line, got %s", v.Type())
		}
		p.begin()
		var ferr error
		obj.Visit(func(key []byte, v *fastjson.Value) {
			if ferr == nil {
				text, ferr = p.setJSON(fieldOf(unsafeString(key), false), v, text)
			}
		})
		if ferr == nil {
			ferr = p.finish()
		}
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// setJSON sets field to the JSON value v; text is scratch space.
func (p *rowParser) setJSON(field int, v *fastjson.Value, text []byte) ([]byte, error) {
	if field == fieldNone || v.Type() == fastjson.TypeNull {
		return text, nil
	}
	text = jsonText(v, text[:0])
	switch t := v.Type(); {
	case field == fieldItems:
		if err := p.once(field, text); err != nil {
			return text, err
		}
		items, err := v.Array()
		if err != nil {
			return text, p.bad(field, text, "want a list of {\"id\",\"qty\",\"price\"}")
		}
		for _, iv := range items {
			if text, err = p.setJSONItem(iv, text); err != nil {
				return text, err
			}
		}
		return text, nil
	case field == fieldItemID || field == fieldQty || field == fieldPrice:
		return text, p.bad(field, text, "an item field: give it inside \"items\"")
	case t == fastjson.TypeString:
		return text, p.set(field, text)
	case t == fastjson.TypeNumber && field != fieldEmail:
		return text, p.set(field, text)
	}
	return text, p.bad(field, text, "want a string or number")
}

// setJSONItem adds one item of "items".
func (p *rowParser) setJSONItem(iv *fastjson.Value, text []byte) ([]byte, error) {
	obj, err := iv.Object()
	if err != nil {
		text = jsonText(iv, text[:0])
		return text, p.bad(fieldItems, text, "an item must be an object {\"id\",\"qty\",\"price\"}")
	}
	it, err := p.addItem()
	if err != nil {
		return text, err
	}
	var seen uint
	obj.Visit(func(key []byte, v *fastjson.Value) {
		f := fieldOf(unsafeString(key), true)
		if err != nil || f == fieldNone || v.Type() == fastjson.TypeNull {
			return
		}
		text = jsonText(v, text[:0])
		switch {
		case seen&(1<<f) != 0:
			err = p.bad(f, text, "%s given twice in one item", fieldName[f])
		case v.Type() != fastjson.TypeString && v.Type() != fastjson.TypeNumber:
			err = p.bad(f, text, "want a string or number")
		default:
			seen |= 1 << f
			err = p.setItem(it, f, text)
		}
	})
	return text, err
}

// jsonText appends the text of v: a string's contents, else its JSON.
func jsonText(v *fastjson.Value, dst []byte) []byte {
	if v.Type() == fastjson.TypeString {
		s, _ := v.StringBytes()
		return append(dst, s...)
	}
	return v.MarshalTo(dst)
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}
