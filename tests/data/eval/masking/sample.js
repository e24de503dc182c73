"use strict";
import { applyTax, RATE } from "./tax.js";

const LABEL = "café 😀";

export function total(items, discount = 0) {
  let subtotal = items.reduce((sum, item) => sum + item.price * item.count, 0);
  if (discount > 0) {
    subtotal -= discount;
    subtotal = Math.max(subtotal, 0);
  }
  return applyTax(subtotal, RATE);
}

export const describe = (items) => {
  // applyTax(subtotal, RATE) is not called here
  const names = items.filter((item) => item.count > 0).map((item) => item.name);
  return `${LABEL}: ${names.join(", ")}`;
};

function noop() { return; }

function stub() {
  throw new Error("Not implemented");
}
