//! Helpers for the end-to-end tests: finding interpreters, starting target scripts.
