//! Invoices: a sample file for the masking levels (non-ASCII: café, 😀).
use crate::tax::{apply_tax, RATE};

const LABEL: &str = "café 😀";

pub struct Item {
    pub price: f64,
    pub count: u32,
}

pub fn total(items: &[Item], discount: f64) -> f64 {
    let mut subtotal: f64 = items.iter().map(|item| item.price * item.count as f64).sum();
    if discount > 0.0 {
        subtotal -= discount;
        subtotal = subtotal.max(0.0);
    }
    apply_tax(subtotal, RATE)
}

pub fn describe(items: &[Item]) -> String {
    // apply_tax(subtotal, RATE) is not called here
    let names: Vec<String> = items.iter().map(|item| format!("{} x {}", item.count, item.price)).collect();
    match names.len() {
        0 => {
            let empty = String::from(LABEL);
            empty.to_uppercase()
        }
        _ => names.join(", "),
    }
}

pub fn size(items: &[Item]) -> usize { items.len() }

pub fn refund(items: &[Item]) -> f64 {
    todo!()
}
