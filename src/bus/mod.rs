//! The bus adapters behind `kernel::EventBus`, chosen by `bus.kind`.

pub mod in_process;

pub use in_process::InProcessBus;
