//! Bazaar's composition root: settings, telemetry, the HTTP server, the bus adapters and the
//! command line. The bounded contexts live in `modules/`; this crate only hosts them.

pub mod bus;
pub mod cli;
pub mod http;
pub mod modules;
pub mod settings;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::Application;
