//! vmha: a vSphere virtual machine as an HA cluster resource.
//!
//! Layers, each knowing only the one below: [`soap`] (transport), [`vim`] (wire types and methods),
//! [`client`] (sessions, properties, tasks, inventory), [`ops`] (the commands), and [`app`]/[`cli`]/[`config`]
//! around them. [`error`] maps every failure to its exit code in one place.

// Errors are the cold path; keeping their context unboxed keeps the code plain.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod log;
pub mod adapters;
pub mod ops;
pub mod soap;
pub mod vim;
