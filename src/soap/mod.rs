//! Transport layer: HTTP(S), the SOAP envelope, faults, TLS policy and recordings. Knows nothing of VMs.

pub mod client;
pub mod conn;
pub mod fault;
pub mod probe;
pub mod record;
pub mod tls;
pub mod xml;

pub use client::{SoapClient, SoapError, TransportOptions};
pub use fault::{Fault, FaultKind};
pub use xml::Element;
