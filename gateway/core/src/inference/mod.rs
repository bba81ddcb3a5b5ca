//! On-device PAT inference: the preprocessing shared by training and inference, PLS regression,
//! Hotelling T² and Q residuals with their limits, the model file and its validation, and (pure
//! computation as well) the training pipeline the hub tool drives.
//!
//! It owns numbers, not devices: spectra arrive as [`crate::spectrum::Spectrum`] values and models
//! as bytes. It does not decide whether a unit is released — that is [`crate::release`], which
//! takes the [`model::Prediction`] made here — and it does no I/O.

pub mod limits;
pub mod model;
pub mod pls;
pub mod preprocess;
pub mod train;

pub use model::{Domain, ModelId, Prediction, Quantity, ValidatedModel};
