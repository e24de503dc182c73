import { formatPrice } from "./util";

function render(amount) {
  return formatPrice(amount);
}
