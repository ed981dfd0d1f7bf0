package catalog

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/affinityhq/affinity/internal/quote"
)

// ymlCategory is one <category> of a YML feed.
type ymlCategory struct {
	parent string
	name   string
}

// maxCategoryDepth bounds the category tree walk (and catches cycles).
const maxCategoryDepth = 32

// parseYML parses a yml_catalog feed (Yandex Market Language, as Retail
// Rocket and most Russian-speaking shops export): shop/categories/category
// (id, parentId, the name as text) give the tree; each shop/offers/offer is
// a product: its id attribute, <vendor> the brand, <categoryId> the path of
// names from the root, <price>, <param name="Age"> (or "age_range",
// "Возраст") the age range, any other <param> and simple child element
// (name, url, currencyId …; the first of repeated ones, <description> left
// out) an attribute. The category tree is kept in memory, the offers are not.
func parseYML(r io.Reader, opts Options, fn func(int, *Product) error) error {
	d := xml.NewDecoder(r)
	cats := map[string]ymlCategory{}
	var (
		stack      []string // names of the open elements
		text       []byte   // the text of the element being read
		b          = rowBuilder{opts: opts}
		inOffer    bool
		offerLine  int
		categoryID string
		param      string // the name attribute of the open <param>
		catID      string // the id and parent of the open <category>
		catParent  string
	)
	lineErr := func(line int, format string, args ...any) error {
		return &LineError{Line: line, Reason: fmt.Sprintf(format, args...)}
	}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if len(stack) > 0 {
				line, _ := d.InputPos()
				return lineErr(line, "unexpected end of the feed inside <%s>", stack[len(stack)-1])
			}
			return nil
		}
		line, _ := d.InputPos()
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return lineErr(se.Line, "invalid XML: %s", quote.OneLine(se.Msg))
			}
			return lineErr(line, "invalid XML: %s", quote.OneLine(err.Error()))
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			stack = append(stack, name)
			text = text[:0]
			switch {
			case name == "category" && under(stack, "categories"):
				catID, catParent = attr(t, "id"), attr(t, "parentId")
				if catID == "" {
					return lineErr(line, "<category> without an id attribute")
				}
			case name == "offer" && under(stack, "offers"):
				inOffer, offerLine, categoryID = true, line, ""
				b.reset()
				id := attr(t, "id")
				if id == "" {
					return lineErr(line, "<offer> without an id attribute")
				}
				if err := b.set([]byte("id"), []byte(id)); err != nil {
					return lineErr(line, "%s", err)
				}
			case name == "param" && inOffer && len(stack) >= 2 && stack[len(stack)-2] == "offer":
				param = attr(t, "name")
				if param == "" {
					return lineErr(line, "<param> without a name attribute")
				}
			}
		case xml.CharData:
			if inOffer && len(stack) >= 2 && stack[len(stack)-2] == "offer" || len(stack) > 0 && stack[len(stack)-1] == "category" {
				if len(text)+len(t) > opts.MaxString {
					return lineErr(line, "<%s> is longer than %d bytes", stack[len(stack)-1], opts.MaxString)
				}
				text = append(text, t...)
			}
		case xml.EndElement:
			name := t.Name.Local
			stack = stack[:len(stack)-1]
			switch {
			case name == "category" && catID != "" && under(append(stack, name), "categories"):
				if _, dup := cats[catID]; dup {
					return lineErr(line, "category id %s given twice", quote.Value(catID))
				}
				cats[catID] = ymlCategory{parent: catParent, name: strings.TrimSpace(string(text))}
				catID = ""
			case name == "offer" && inOffer && len(stack) > 0 && stack[len(stack)-1] == "offers":
				inOffer = false
				if categoryID != "" {
					if err := categoryPath(&b, cats, categoryID); err != nil {
						return lineErr(offerLine, "%s", err)
					}
				}
				if err := b.finish(); err != nil {
					return lineErr(offerLine, "%s", err)
				}
				if err := fn(offerLine, &b.p); err != nil {
					return err
				}
			case inOffer && len(stack) > 0 && stack[len(stack)-1] == "offer":
				if err := offerField(&b, name, param, text, &categoryID); err != nil {
					return lineErr(line, "%s", err)
				}
				param = ""
			}
		}
	}
}

// under reports whether the innermost open element's parent is parent.
func under(stack []string, parent string) bool {
	return len(stack) >= 2 && stack[len(stack)-2] == parent
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

// offerField sets the child element name (with text) of an offer.
func offerField(b *rowBuilder, name, param string, text []byte, categoryID *string) error {
	switch name {
	case "vendor":
		return b.set([]byte("brand"), text)
	case "price":
		return b.set([]byte("price"), text)
	case "categoryId":
		if *categoryID != "" {
			return nil // the first category is the main one
		}
		*categoryID = strings.TrimSpace(string(text))
		return nil
	case "description":
		return nil
	case "param":
		switch strings.ToLower(param) {
		case "age", "age_range", "age range", "возраст":
			if b.seen&(1<<fieldAge) != 0 {
				return nil
			}
			return b.set([]byte("age"), text)
		}
		name = param
	}
	if fieldOf(lowerASCII([]byte(name))) != fieldAttr {
		name = "param:" + name // a param named "brand" does not override <vendor>
	}
	if _, dup := b.p.Attr(name); dup {
		return nil // repeated elements (picture …): the first is kept
	}
	return b.addAttr([]byte(name), trimSpace(text))
}

// categoryPath sets b's category to the path of names from the root of the
// tree to the category id.
func categoryPath(b *rowBuilder, cats map[string]ymlCategory, id string) error {
	var names [maxCategoryDepth]string
	n := 0
	for cur := id; cur != ""; {
		c, ok := cats[cur]
		if !ok {
			if cur == id {
				return fmt.Errorf("categoryId %s is not in <categories>", quote.Value(id))
			}
			return fmt.Errorf("category %s has parentId %s, which is not in <categories>", quote.Value(id), quote.Value(cur))
		}
		if n == maxCategoryDepth {
			return fmt.Errorf("category %s is more than %d levels deep (or its parents loop)", quote.Value(id), maxCategoryDepth)
		}
		names[n] = c.name
		n++
		cur = c.parent
	}
	if err := b.markSeen(fieldCategory); err != nil {
		return err
	}
	for i := n - 1; i >= 0; i-- {
		if err := b.addCategoryLevel([]byte(strings.ReplaceAll(names[i], "/", "-"))); err != nil {
			return err
		}
	}
	return nil
}
