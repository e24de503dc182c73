import { Money, addMoney, formatMoney, money } from "./money";

export interface Line {
  sku: string;
  price: Money;
  quantity: number;
}

export class Cart {
  private lines: Line[] = [];

  add(sku: string, price: Money, quantity = 1): void {
    const found = this.lines.find((line) => line.sku === sku);
    if (found) {
      found.quantity += quantity;
      return;
    }
    this.lines.push({ sku, price, quantity });
  }

  total(currency = "EUR"): Money {
    let sum = money(0, currency);
    for (const line of this.lines) {
      sum = addMoney(sum, money(line.price.cents * line.quantity, line.price.currency));
    }
    return sum;
  }

  describe(): string {
    const parts = this.lines.map((line) => `${line.quantity} x ${line.sku}`);
    return `${parts.join(", ")}: ${formatMoney(this.total())}`;
  }
}
