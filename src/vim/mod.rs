//! Wire types and methods of vim25. Knows the transport, nothing above it.

pub mod methods;
pub mod types;

pub use types::*;
