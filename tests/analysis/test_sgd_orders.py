"""The Python recipe of sgd's batch orders (sgd_orders.py, the oracle of the torch comparison and of the
module's sgd_permutation) against the order the C++ code gives, pinned by tests/unit/test_sgd.cpp
(PermutationsAreTheSpecifiedFisherYates prints it)."""
from sgd_orders import permutation


def test_the_python_orders_are_eomlabs():
    assert permutation(1, 0, 8) == [7, 5, 3, 2, 1, 6, 4, 0]
