package shop.invoice;

import java.util.ArrayList;
import java.util.List;
import shop.tax.TaxTable;

/** Invoices: a sample file for the masking levels (non-ASCII: café, 😀). */
public class Invoice {
    private static final String LABEL = "café 😀";
    private final List<Item> items = new ArrayList<>();

    public void add(Item item) {
        items.add(item);
    }

    public double total(double discount) {
        double subtotal = items.stream().mapToDouble(item -> item.price * item.count).sum();
        if (discount > 0) {
            subtotal -= discount;
            subtotal = Math.max(subtotal, 0);
        }
        return TaxTable.apply(subtotal, TaxTable.RATE);
    }

    public int size() { return items.size(); }

    public String describe() {
        // TaxTable.apply(total) is not called here
        TaxTable table = new TaxTable("TaxTable.apply(x)");
        return table.describe(items);
    }

    public double refund() {
        throw new UnsupportedOperationException("refund");
    }
}
