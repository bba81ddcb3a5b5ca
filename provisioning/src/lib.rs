//! DoseGate's tools for people. The hub operators' `dosegate-hub` keeps its state in a *hub home*
//! directory ([`hub::HubHome`]) and signs with keys kept there; the decisions themselves (formats,
//! verification) come from `dosegate-core`, so the hub and the gateway can never disagree about
//! what a signed object means.

pub mod broker;
pub mod fleet;
pub mod fleet_cmd;
pub mod hub;
pub mod model;
pub mod pki;
pub mod sign_job;
