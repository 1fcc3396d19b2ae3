//! End-to-end tests of Nadir live in `tests/tests/`: they run the real `nadir` binary (and, once
//! the query service exists, the real HTTP router) on real data. This library is empty on purpose.
