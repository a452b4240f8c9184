//! # swarm-sim: Shoal at 10,000 to 150,000 viewers
//!
//! A deterministic discrete-event simulator that drives the real
//! `swarm-proto` engines and the real peer-matching rule over simulated
//! links (see [`sim`] for what is real and what is not), configured by TOML
//! scenarios ([`scenario`], `scenarios/*.toml`), reporting the figures of
//! [`report`]. `npm run bench:sim` runs the shipped scenarios.

pub mod net;
pub mod queue;
pub mod report;
pub mod scenario;
pub mod sim;

pub use scenario::Scenario;
pub use sim::{run, Figures, Options, Outcome};
