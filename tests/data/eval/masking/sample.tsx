// A component: a sample file for the masking levels.
import React from "react";
import { applyTax, RATE } from "./tax";

export function Total({ items }: { items: { price: number }[] }) {
  const subtotal = items.reduce((sum, item) => sum + item.price, 0);
  if (subtotal > 100) {
    console.log("large order");
    return <strong>Total: {applyTax(subtotal, RATE)}</strong>;
  }
  // applyTax(subtotal, RATE) is not called here
  return <span className="total">Total is applyTax(subtotal, RATE)</span>;
}
