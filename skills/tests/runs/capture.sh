#!/usr/bin/env bash
# Captures the test-run outputs in this folder: a reproduction test in each of
# the shapes `reproduce::classify` tells apart, run the way the sandbox runs it
# (skills/src/runner.rs), with the scratch folder's path written as the
# sandbox's `/work`.
#
# Usage: skills/tests/runs/capture.sh PYTHON_WITH_PYTEST
#   That Python runs pytest (a virtual environment's, say); unittest runs with
#   $PYTHON (default /usr/bin/python3, the one the sandbox finds), JavaScript
#   with node.
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
pytest_python="$1"
unittest_python="${PYTHON:-/usr/bin/python3}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cd "$dir"

mkdir -p shop tests lib
touch shop/__init__.py tests/__init__.py
cat > shop/pricing.py <<'PY'
"""Prices."""

BULK_QUANTITY = 10


def bulk_price(unit_price, quantity):
    """The price of `quantity` items: 10% off from BULK_QUANTITY items on."""
    total = unit_price * quantity
    if quantity > BULK_QUANTITY:
        total = total * 0.9
    return round(total, 2)


def total_of(items):
    """The sum of the items' prices."""
    return sum(price_of(i) for i in items)
PY
cat > shop/broken.py <<'PY'
"""A module that fails as it is imported."""

RATES = {"eu": rate_of("eu")}
PY

head='import unittest
from shop.pricing import bulk_price


class T(unittest.TestCase):
    def test_it(self):'
declare -A python=(
  [name_error]='import unittest


class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(bulk_price(2.0, 10), 18.0)'
  [missing_name]='import unittest
from shop.pricing import bulk_pricing


class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(bulk_pricing(2.0, 10), 18.0)'
  [missing_module]='import unittest
from shop.nothing import bulk_price


class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(bulk_price(2.0, 10), 18.0)'
  [syntax_error]="$head
        self.assertEqual(bulk_price(2.0, 10), 18.0"
  [missing_fixture]='import unittest
from shop.pricing import bulk_price

def test_it(cart):
    assert bulk_price(2.0, 10) == 18.0


class BasisCollectedTests(unittest.TestCase):
    pass


for _name, _fn in list(globals().items()):
    if _name.startswith("test") and callable(_fn):
        setattr(BasisCollectedTests, _name, lambda self, _f=_fn: _f())'
  [module_attribute]='import unittest
from shop import pricing


class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(pricing.bulk_pricing(2.0, 10), 18.0)'
  [assertion]="$head
        self.assertEqual(bulk_price(2.0, 10), 18.0)"
  [value_attribute]="$head
        self.assertEqual(bulk_price(2.0, 10).cents, 1800)"
  [library_name_error]='import unittest
from shop.pricing import total_of


class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(total_of([1, 2]), 3)'
  [library_load_error]='import unittest
from shop.broken import RATES


class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(RATES["eu"], 0.2)'
)
test=tests/test_basis_reproduction.py
for name in "${!python[@]}"; do
  printf '%s\n' "${python[$name]}" > "$test"
  rm -rf tests/__pycache__ shop/__pycache__ .pytest_cache
  "$unittest_python" -m unittest -v "$test" > "$out/python_unittest_$name.txt" 2>&1 || true
  "$pytest_python" -m pytest -q -p no:cacheprovider "$test" > "$out/python_pytest_$name.txt" 2>&1 || true
done
rm -f "$test"

cat > lib/price.js <<'JS'
function bulkPrice(unit, quantity) {
  const total = unit * quantity;
  return quantity > 10 ? total * 0.9 : total;
}
function totalOf(items) {
  return items.reduce((sum, item) => sum + priceOf(item), 0);
}
module.exports = { bulkPrice, totalOf };
JS
declare -A javascript=(
  [reference_error]="const test = require('node:test');
const assert = require('node:assert');

test('ten items get the bulk price', () => {
  assert.strictEqual(bulkPrice(2, 10), 18);
});"
  [top_level_reference_error]="const test = require('node:test');
const assert = require('node:assert');
const price = bulkPrice(2, 10);

test('ten items get the bulk price', () => {
  assert.strictEqual(price, 18);
});"
  [assertion]="const test = require('node:test');
const assert = require('node:assert');
const { bulkPrice } = require('./price');

test('ten items get the bulk price', () => {
  assert.strictEqual(bulkPrice(2, 10), 18);
});"
  [library_reference_error]="const test = require('node:test');
const assert = require('node:assert');
const { totalOf } = require('./price');

test('a total', () => {
  assert.strictEqual(totalOf([1, 2]), 3);
});"
)
test=lib/basis_reproduction.test.js
for name in "${!javascript[@]}"; do
  printf '%s\n' "${javascript[$name]}" > "$test"
  node --test --test-reporter=tap "$test" > "$out/node_tap_$name.txt" 2>&1 || true
  node --test --test-reporter=spec "$test" > "$out/node_spec_$name.txt" 2>&1 || true
done

# The scratch folder as the sandbox names it; timings and addresses vary by run.
sed -i -E -e "s#$dir/#/work/#g" -e 's/(duration_ms:? )[0-9.]+/\11.0/' \
  -e 's/\([0-9.]+ms\)/(1.0ms)/' -e 's/ in [0-9.]+s/ in 0.01s/' -e 's/0x[0-9a-f]+/0x7f0000000000/g' \
  "$out"/python_*.txt "$out"/node_*.txt
