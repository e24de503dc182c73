export interface Money {
  cents: number;
  currency: string;
}

export function money(cents: number, currency = "EUR"): Money {
  if (!Number.isInteger(cents)) {
    throw new RangeError(`cents must be an integer, got ${cents}`);
  }
  return { cents, currency };
}

export function addMoney(a: Money, b: Money): Money {
  if (a.currency !== b.currency) {
    throw new Error(`cannot add ${a.currency} to ${b.currency}`);
  }
  return money(a.cents + b.cents, a.currency);
}

export function formatMoney(m: Money): string {
  const units = Math.floor(m.cents / 100);
  const rest = String(m.cents % 100).padStart(2, "0");
  return `${units}.${rest} ${m.currency}`;
}
