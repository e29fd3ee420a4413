//! Shared test support: the simulator harness, the vmha runner, the scenario table and the replay mount.
#![allow(dead_code)]

pub mod replay;
pub mod run;
pub mod scenarios;
pub mod sim;
