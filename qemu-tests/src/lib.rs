//! Harness placeholder.
