//! Fakes for unit tests.
