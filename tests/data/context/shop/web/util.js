// Formatting helpers for the web client.
export function formatPrice(amount) {
  return `$${amount.toFixed(2)}`;
}

export class PriceTag {
  constructor(amount) {
    this.amount = amount;
  }
}
