import { Cart } from "./cart";
import { money } from "./money";

const cart = new Cart();
cart.add("apple", money(120));
if (cart.describe() !== "1 x apple: 1.20 EUR") throw new Error("describe");
