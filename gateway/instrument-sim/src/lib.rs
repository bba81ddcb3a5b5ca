//! Simulated instruments.
