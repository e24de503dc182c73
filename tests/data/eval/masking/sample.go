// Package invoice totals orders (non-ASCII: café, 😀).
package invoice

import (
	"fmt"

	"example.com/shop/tax"
)

const Label = "café 😀"

type Item struct {
	Price float64
	Count int
}

func Total(items []Item, discount float64) float64 {
	subtotal := 0.0
	for _, item := range items {
		subtotal += item.Price * float64(item.Count)
	}
	if discount > 0 {
		subtotal -= discount
		subtotal = max(subtotal, 0)
	}
	return tax.Apply(subtotal, tax.Rate)
}

func Describe(items []Item) string {
	// tax.Apply(total) is not called here
	names := make([]string, 0, len(items))
	for _, item := range items {
		names = append(names, fmt.Sprintf("%d x %.2f", item.Count, item.Price))
	}
	return fmt.Sprint(names)
}

func Size(items []Item) int { return len(items) }

func Refund(items []Item) float64 {
	panic("not implemented")
}
