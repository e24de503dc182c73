// Invoices: a sample file for the masking levels (non-ASCII: café, 😀).
import { applyTax, RATE } from "./tax";

const LABEL = "café 😀";

export interface Item {
  price: number;
  count: number;
}

export class Invoice {
  private items: Item[] = [];

  add(item: Item): void {
    this.items.push(item);
  }

  total(discount = 0): number {
    let subtotal = this.items.reduce((sum, item) => sum + item.price * item.count, 0);
    if (discount > 0) {
      subtotal -= discount;
      subtotal = Math.max(subtotal, 0);
    }
    return applyTax(subtotal, RATE);
  }

  size(): number { return this.items.length; }

  describe(): string {
    // applyTax(subtotal, RATE) is not called here
    return "applyTax(total, RATE) = " + this.items.map((item) => item.count).join(", ");
  }

  refund(): number {
    throw new Error("not implemented");
  }
}
