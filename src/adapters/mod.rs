//! The cluster managers' adapters: each translates its manager's protocol (arguments, environment,
//! exit codes) into vmha's commands and back, and nothing more. Their shell shims and drop-ins live
//! beside them in `adapters/` at the crate root.

pub mod fence;
pub mod ocf;
