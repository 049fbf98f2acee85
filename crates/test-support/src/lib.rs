//! Test harness shared by every Hookline test: real parts, no mocks.
//!
//! - [`redis`]: a private `redis-server` on a free loopback port, killed on drop.
//! - [`wait`]: waiting on a condition with a deadline instead of sleeping.

pub mod redis;
pub mod wait;
