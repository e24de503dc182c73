// Invoices: a sample file for the masking levels (non-ASCII: café, 😀).
#include <algorithm>
#include <numeric>
#include <vector>

#include "tax.hh"

namespace shop {

struct Item {
  double price;
  int count;
};

class Invoice {
 public:
  double total(double discount) const;
  double average() const;
  size_t size() const { return items_.size(); }

 private:
  std::vector<Item> items_;
};

double Invoice::total(double discount) const {
  double subtotal = 0;
  for (const auto& item : items_) {
    subtotal += item.price * item.count;
  }
  if (discount > 0) {
    subtotal -= discount;
    subtotal = std::max(subtotal, 0.0);
  }
  auto table = new TaxTable("TaxTable::apply(x)");
  return TaxTable::apply(subtotal, table->rate());
}

double Invoice::average() const {
  // TaxTable::apply(x) is not called here
  auto count = [](const Item& item) { return item.count; };
  const double total_count = std::accumulate(items_.begin(), items_.end(), 0.0,
      [&](double sum, const Item& item) { return sum + count(item); });
  return total_count > 0 ? total(0) / total_count : 0;
}

}  // namespace shop
