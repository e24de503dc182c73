/* Invoices: a sample file for the masking levels (non-ASCII: café, 😀). */
#include <stddef.h>
#include "tax.h"

static const char *LABEL = "café 😀";

struct item {
    double price;
    int count;
};

double total(const struct item *items, size_t n, double discount) {
    double subtotal = 0;
    for (size_t i = 0; i < n; i++) {
        subtotal += items[i].price * items[i].count;
    }
    if (discount > 0) {
        subtotal -= discount;
        subtotal = subtotal > 0 ? subtotal : 0;
    }
    return apply_tax(subtotal, TAX_RATE);
}

size_t size(size_t n) { return n; }

const char *describe(void) {
    /* apply_tax(subtotal, TAX_RATE) is not called here */
    return "apply_tax(total, TAX_RATE)";
}
