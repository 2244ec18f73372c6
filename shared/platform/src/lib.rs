//! IO plumbing shared by Tally's services. Domain rules live in `tally-domain`;
//! this crate only moves bytes in and out of PostgreSQL and Kafka.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod db;
pub mod kafka;
pub mod telemetry;

pub use config::Config;
