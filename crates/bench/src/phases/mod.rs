//! The benchmark's phases, one module each; `main.rs` runs them in order.

pub(crate) mod cluster;
pub(crate) mod flood;
pub(crate) mod floor;
pub(crate) mod noisy;
pub(crate) mod saturation;
pub(crate) mod scaling;
pub(crate) mod steady;
