#!/usr/bin/env bash
# Builds shopkit, the example repository Basis mines tasks from: a small Python
# package (pricing, a cart, inventory, text helpers) with unittest tests, and a
# Rust crate (a ledger) with its own tests, committed over 14 commits, 7 of
# which fix a bug. Authors, dates and contents are fixed, so every build has the
# same commit ids (the task files beside this script name them).
#
#   bash examples/shopkit/build.sh            # into examples/shopkit/repo
#   bash examples/shopkit/build.sh DEST       # anywhere else
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="${1:-$HERE/repo}"
if [[ -e "$DEST" ]]; then
    if [[ -f "$DEST/.git/basis-example" ]]; then
        rm -rf "$DEST"
    else
        echo "error: $DEST exists and is not a shopkit build; remove it or give another folder" >&2
        exit 1
    fi
fi
mkdir -p "$DEST"
cd "$DEST"
git -c init.defaultBranch=main init -q
touch .git/basis-example
export GIT_AUTHOR_NAME="Shopkit Developer" GIT_AUTHOR_EMAIL="dev@shopkit.example"
export GIT_COMMITTER_NAME="Shopkit Developer" GIT_COMMITTER_EMAIL="dev@shopkit.example"
DAY=0
commit() {
    DAY=$((DAY + 1))
    local when
    when="2026-01-$(printf '%02d' "$DAY")T10:00:00+00:00"
    git add -A
    GIT_AUTHOR_DATE="$when" GIT_COMMITTER_DATE="$when" \
        git -c commit.gpgsign=false -c core.autocrlf=false commit -q -m "$1"
}
file() { mkdir -p "$(dirname "$1")"; cat > "$1"; }

# ---------------------------------------------------------------- 1
file .gitignore <<'EOF'
__pycache__/
target/
Cargo.lock
EOF
file shopkit/__init__.py <<'EOF'
"""Shopkit: prices, carts and stock for a small shop."""
EOF
file shopkit/pricing.py <<'EOF'
"""Prices: line totals, discounts and the bulk price."""

BULK_QUANTITY = 10
BULK_DISCOUNT = 0.1


def line_total(unit_price, quantity):
    """The price of `quantity` items at `unit_price`, rounded to cents."""
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    return round(unit_price * quantity, 2)


def apply_discount(price, percent):
    """The price after a discount of `percent` percent."""
    return round(price * (100 - percent) / 100, 2)


def bulk_price(unit_price, quantity):
    """The line total, with the bulk discount from BULK_QUANTITY items on."""
    total = line_total(unit_price, quantity)
    if quantity > BULK_QUANTITY:
        total = total * (1 - BULK_DISCOUNT)
    return round(total, 2)
EOF
file shopkit/cart.py <<'EOF'
"""A shopping cart: items with quantities and unit prices."""

from shopkit.pricing import line_total


class Cart:
    """Items in a cart, by name."""

    def __init__(self):
        self.items = {}

    def add(self, name, unit_price, quantity=1):
        """Adds `quantity` of an item (more of one already there adds up)."""
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        price, count = self.items.get(name, (unit_price, 0))
        self.items[name] = (price, count + quantity)

    def remove(self, name, quantity=1):
        """Takes `quantity` of an item out; the item goes when none is left."""
        price, count = self.items[name]
        if count <= quantity:
            del self.items[name]
        else:
            self.items[name] = (price, count - quantity)

    def count(self):
        """How many items the cart holds in all."""
        return sum(count for _, count in self.items.values())

    def total(self):
        """The price of everything in the cart."""
        return round(sum(line_total(p, c) for p, c in self.items.values()), 2)
EOF
file tests/__init__.py <<'EOF'
EOF
file tests/test_pricing.py <<'EOF'
import unittest

from shopkit.pricing import apply_discount, bulk_price, line_total


class PricingTest(unittest.TestCase):
    def test_line_total(self):
        self.assertEqual(line_total(2.5, 4), 10.0)
        self.assertEqual(line_total(0.1, 3), 0.3)
        with self.assertRaises(ValueError):
            line_total(1.0, -1)

    def test_discount(self):
        self.assertEqual(apply_discount(50.0, 10), 45.0)
        self.assertEqual(apply_discount(20.0, 0), 20.0)

    def test_bulk_price_above_the_threshold(self):
        self.assertEqual(bulk_price(2.0, 5), 10.0)
        self.assertEqual(bulk_price(2.0, 20), 36.0)


if __name__ == "__main__":
    unittest.main()
EOF
file tests/test_cart.py <<'EOF'
import unittest

from shopkit.cart import Cart


class CartTest(unittest.TestCase):
    def test_add_and_total(self):
        cart = Cart()
        cart.add("apple", 0.5, 4)
        cart.add("pear", 0.75)
        cart.add("apple", 0.5, 2)
        self.assertEqual(cart.count(), 7)
        self.assertEqual(cart.total(), 3.75)

    def test_remove(self):
        cart = Cart()
        cart.add("apple", 0.5, 3)
        cart.remove("apple", 2)
        self.assertEqual(cart.count(), 1)
        cart.remove("apple")
        self.assertEqual(cart.count(), 0)
        self.assertEqual(cart.total(), 0)

    def test_add_rejects_nothing(self):
        with self.assertRaises(ValueError):
            Cart().add("apple", 0.5, 0)


if __name__ == "__main__":
    unittest.main()
EOF
commit "Start shopkit: pricing and a cart, with tests"

# ---------------------------------------------------------------- 2
file ledger/Cargo.toml <<'EOF'
[package]
name = "ledger"
version = "0.1.0"
edition = "2021"
publish = false

# A crate of its own, not part of any workspace above it.
[workspace]
EOF
file ledger/src/lib.rs <<'EOF'
//! A ledger of amounts in cents: deposits are positive, withdrawals negative.

/// The entries of an account.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Vec<i64>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an amount (in cents).
    pub fn record(&mut self, amount: i64) {
        self.entries.push(amount);
    }

    /// The sum of every entry.
    pub fn balance(&self) -> i64 {
        self.entries.iter().sum()
    }

    /// Whether the balance is below zero.
    pub fn is_overdrawn(&self) -> bool {
        self.balance() < -1
    }

    /// The largest withdrawal, if there was one.
    pub fn largest_withdrawal(&self) -> Option<i64> {
        self.entries.iter().copied().filter(|a| *a < 0).min()
    }
}

/// Parses an amount like `12.34` or `-5` into cents.
pub fn parse_amount(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, cents) = match digits.split_once('.') {
        Some((w, c)) if c.len() == 2 => (w, c),
        Some(_) => return None,
        None => (digits, "00"),
    };
    let value = whole.parse::<i64>().ok()? * 100 + cents.parse::<i64>().ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_adds_up() {
        let mut l = Ledger::new();
        l.record(1000);
        l.record(-250);
        assert_eq!(l.balance(), 750);
        assert_eq!(l.largest_withdrawal(), Some(-250));
    }

    #[test]
    fn overdrawn_below_zero() {
        let mut l = Ledger::new();
        l.record(-500);
        assert!(l.is_overdrawn());
        l.record(500);
        assert!(!l.is_overdrawn());
    }

    #[test]
    fn amounts_parse_to_cents() {
        assert_eq!(parse_amount("12.34"), Some(1234));
        assert_eq!(parse_amount("-5"), Some(-500));
        assert_eq!(parse_amount("1.5"), None);
        assert_eq!(parse_amount("x"), None);
    }
}
EOF
commit "Add the ledger crate (amounts in cents)"

# ---------------------------------------------------------------- 3
file shopkit/inventory.py <<'EOF'
"""Stock: what is on the shelf, and what customers have reserved."""


class Inventory:
    """Stock per item, and reservations against it."""

    def __init__(self):
        self.stock = {}
        self.reserved = {}

    def restock(self, name, quantity):
        """Puts `quantity` more of an item on the shelf."""
        self.stock[name] = self.stock.get(name, 0) + quantity

    def available(self, name):
        """What can still be reserved: the stock less the reservations."""
        return self.stock.get(name, 0) - self.reserved.get(name, 0)

    def reserve(self, name, quantity):
        """Reserves `quantity` of an item; False when not enough is available."""
        if quantity > self.available(name):
            return False
        self.reserved[name] = self.reserved.get(name, 0) + quantity
        return True

    def release(self, name, quantity):
        """Gives back `quantity` of a reservation."""
        self.reserved[name] = self.reserved.get(name, 0) - quantity
EOF
file tests/test_inventory.py <<'EOF'
import unittest

from shopkit.inventory import Inventory


class InventoryTest(unittest.TestCase):
    def test_reserve_within_stock(self):
        inv = Inventory()
        inv.restock("apple", 5)
        self.assertTrue(inv.reserve("apple", 3))
        self.assertEqual(inv.available("apple"), 2)
        self.assertFalse(inv.reserve("apple", 3))

    def test_release(self):
        inv = Inventory()
        inv.restock("apple", 5)
        inv.reserve("apple", 4)
        inv.release("apple", 1)
        self.assertEqual(inv.available("apple"), 2)


if __name__ == "__main__":
    unittest.main()
EOF
commit "Add inventory reservations"

# ---------------------------------------------------------------- 4
sed -i 's/    if quantity > BULK_QUANTITY:/    if quantity >= BULK_QUANTITY:/' shopkit/pricing.py
python3 - <<'EOF'
import re
p = "tests/test_pricing.py"
s = open(p).read()
s = s.replace('''        self.assertEqual(bulk_price(2.0, 20), 36.0)
''', '''        self.assertEqual(bulk_price(2.0, 20), 36.0)

    def test_bulk_price_at_the_threshold(self):
        self.assertEqual(bulk_price(2.0, 10), 18.0)
        self.assertEqual(bulk_price(2.0, 9), 18.0)
''')
open(p, "w").write(s)
EOF
commit "Fix the bulk discount threshold: ten items already get the discount

The docstring says the discount applies from BULK_QUANTITY items on, but
exactly ten items were charged the full price."

# ---------------------------------------------------------------- 5
file shopkit/text.py <<'EOF'
"""Text helpers: slugs for item names, quantities typed by people."""


def slugify(name):
    """A lowercase slug of `name`: letters and digits, words joined by dashes."""
    out = []
    for ch in name.lower():
        out.append(ch if ch.isalnum() else "-")
    return "".join(out).strip("-")


def parse_quantity(text):
    """The quantity in `text` ("3", " 12 ", "2x"), or None when there is none."""
    digits = text.strip().rstrip("xX").strip()
    if not digits.isdigit():
        return None
    return int(digits)
EOF
file tests/test_text.py <<'EOF'
import unittest

from shopkit.text import parse_quantity, slugify


class TextTest(unittest.TestCase):
    def test_slugify(self):
        self.assertEqual(slugify("Green Apple"), "green-apple")
        self.assertEqual(slugify("  Pear! "), "pear")

    def test_parse_quantity(self):
        self.assertEqual(parse_quantity("3"), 3)
        self.assertEqual(parse_quantity(" 12 "), 12)
        self.assertEqual(parse_quantity("2x"), 2)
        self.assertIsNone(parse_quantity("many"))


if __name__ == "__main__":
    unittest.main()
EOF
commit "Add text helpers: slugify and parse_quantity"

# ---------------------------------------------------------------- 6
python3 - <<'EOF'
p = "shopkit/cart.py"
s = open(p).read()
s = s.replace('''        """Takes `quantity` of an item out; the item goes when none is left."""
        price, count = self.items[name]
''', '''        """Takes `quantity` of an item out; the item goes when none is left.
        Removing an item that is not in the cart does nothing."""
        if name not in self.items:
            return
        price, count = self.items[name]
''')
open(p, "w").write(s)
p = "tests/test_cart.py"
s = open(p).read()
s = s.replace('''    def test_add_rejects_nothing(self):''', '''    def test_remove_what_is_not_there(self):
        cart = Cart()
        cart.remove("apple")
        self.assertEqual(cart.count(), 0)

    def test_add_rejects_nothing(self):''')
open(p, "w").write(s)
EOF
commit "fix(cart): removing an item that is not in the cart raised KeyError"

# ---------------------------------------------------------------- 7
python3 - <<'EOF'
p = "ledger/src/lib.rs"
s = open(p).read()
s = s.replace('''    /// The largest withdrawal, if there was one.''', '''    /// The interest on a positive balance at `rate_percent` percent, rounded
    /// down to whole cents; an overdrawn account earns nothing.
    pub fn interest(&self, rate_percent: i64) -> i64 {
        let balance = self.balance();
        if balance <= 0 {
            return 0;
        }
        balance * rate_percent / 100
    }

    /// The largest withdrawal, if there was one.''')
s = s.replace('''    #[test]
    fn amounts_parse_to_cents() {''', '''    #[test]
    fn interest_on_positive_balances_only() {
        let mut l = Ledger::new();
        l.record(10_000);
        assert_eq!(l.interest(3), 300);
        l.record(-20_000);
        assert_eq!(l.interest(3), 0);
    }

    #[test]
    fn amounts_parse_to_cents() {''')
open(p, "w").write(s)
EOF
commit "Ledger: interest on positive balances"

# ---------------------------------------------------------------- 8
python3 - <<'EOF'
p = "ledger/src/lib.rs"
s = open(p).read()
s = s.replace("        self.balance() < -1\n", "        self.balance() < 0\n")
s = s.replace('''        l.record(500);
        assert!(!l.is_overdrawn());''', '''        l.record(499);
        assert!(l.is_overdrawn(), "a balance of -1 is overdrawn");
        l.record(1);
        assert!(!l.is_overdrawn());''')
open(p, "w").write(s)
EOF
commit "Fix the overdraft check: a balance of -1 cent is overdrawn"

# ---------------------------------------------------------------- 9
python3 - <<'EOF'
p = "shopkit/text.py"
s = open(p).read()
s = s.replace('''    out = []
    for ch in name.lower():
        out.append(ch if ch.isalnum() else "-")
    return "".join(out).strip("-")''', '''    out = []
    for ch in name.lower():
        if ch.isalnum():
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")''')
open(p, "w").write(s)
p = "tests/test_text.py"
s = open(p).read()
s = s.replace('''        self.assertEqual(slugify("  Pear! "), "pear")''', '''        self.assertEqual(slugify("  Pear! "), "pear")
        self.assertEqual(slugify("Apple  &  Pear"), "apple-pear")''')
open(p, "w").write(s)
EOF
commit "Fix slugify: runs of spaces and signs gave several dashes"

# ---------------------------------------------------------------- 10
python3 - <<'EOF'
p = "shopkit/inventory.py"
s = open(p).read()
s += '''
    def low_stock(self, threshold):
        """Names of the items with fewer than `threshold` available, sorted."""
        return sorted(n for n in self.stock if self.available(n) < threshold)
'''
open(p, "w").write(s)
p = "tests/test_inventory.py"
s = open(p).read()
s = s.replace('''

if __name__ == "__main__":''', '''
    def test_low_stock(self):
        inv = Inventory()
        inv.restock("apple", 5)
        inv.restock("pear", 1)
        inv.restock("plum", 2)
        self.assertEqual(inv.low_stock(2), ["pear"])
        self.assertEqual(inv.low_stock(3), ["pear", "plum"])


if __name__ == "__main__":''')
open(p, "w").write(s)
EOF
commit "Add a low-stock report"

# ---------------------------------------------------------------- 11
python3 - <<'EOF'
p = "shopkit/inventory.py"
s = open(p).read()
s = s.replace('''        """Gives back `quantity` of a reservation."""
        self.reserved[name] = self.reserved.get(name, 0) - quantity''', '''        """Gives back `quantity` of a reservation (never more than is reserved)."""
        held = self.reserved.get(name, 0)
        self.reserved[name] = held - min(quantity, held)''')
open(p, "w").write(s)
p = "tests/test_inventory.py"
s = open(p).read()
s = s.replace('''    def test_low_stock(self):''', '''    def test_release_more_than_reserved(self):
        inv = Inventory()
        inv.restock("apple", 5)
        inv.reserve("apple", 1)
        inv.release("apple", 3)
        self.assertEqual(inv.available("apple"), 5)

    def test_low_stock(self):''')
open(p, "w").write(s)
EOF
commit "fix: releasing more than was reserved made more stock available than the shelf holds"

# ---------------------------------------------------------------- 12
python3 - <<'EOF'
p = "ledger/src/lib.rs"
s = open(p).read()
s = s.replace('''/// Parses an amount like `12.34` or `-5` into cents.''', '''/// Parses an amount like `12.34`, `+3` or `-5` into cents.''')
s = s.replace('''    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };''', '''    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };''')
s = s.replace('''        assert_eq!(parse_amount("-5"), Some(-500));''', '''        assert_eq!(parse_amount("-5"), Some(-500));
        assert_eq!(parse_amount("+3"), Some(300));''')
open(p, "w").write(s)
EOF
commit "Fix parse_amount: an amount with a plus sign was rejected"

# ---------------------------------------------------------------- 13
python3 - <<'EOF'
p = "shopkit/pricing.py"
s = open(p).read()
s = s.replace('''    """The price after a discount of `percent` percent."""
    return round(price * (100 - percent) / 100, 2)''', '''    """The price after a discount of `percent` percent, never below zero."""
    percent = min(max(percent, 0), 100)
    return round(price * (100 - percent) / 100, 2)''')
open(p, "w").write(s)
p = "tests/test_pricing.py"
s = open(p).read()
s = s.replace('''        self.assertEqual(apply_discount(20.0, 0), 20.0)''', '''        self.assertEqual(apply_discount(20.0, 0), 20.0)
        self.assertEqual(apply_discount(20.0, 120), 0.0)''')
open(p, "w").write(s)
EOF
commit "Handle discounts over 100%: the price went negative"

# ---------------------------------------------------------------- 14
file README.md <<'EOF'
# shopkit

A small shop's code: `shopkit/` (Python: pricing, a cart, inventory, text
helpers; tests in `tests/`, run with `python3 -m unittest`) and `ledger/` (Rust:
amounts in cents; `cargo test --manifest-path ledger/Cargo.toml`).
EOF
commit "Describe the project in a README"

echo "built shopkit in $DEST at $(git rev-parse --short HEAD)" >&2
