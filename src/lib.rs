//! opsctl: a Terraform-style plan/apply engine for operational maintenance procedures.
//!
//! Phases as modules, dependencies pointing one way: `cli` -> `apply` -> `plan` -> `graph` ->
//! `config`; `provider` implements the step contract; `state` owns on-disk formats; `render`
//! is the only writer to the terminal. See ARCHITECTURE.md.

pub mod apply;
pub mod cli;
pub mod config;
pub mod graph;
pub mod plan;
pub mod provider;
pub mod render;
pub mod state;
